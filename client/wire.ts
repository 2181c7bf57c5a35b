/** Client side of the wire protocol: framing requests, and connections in both reply framings. */
import net from 'node:net';

export type Framing = 'bare' | 'length';

/** Bodies are sent as given: a Buffer passes arbitrary (even invalid) bytes through untouched. */
export function frameRequest(xml: string | Buffer): Buffer {
  const body = typeof xml === 'string' ? Buffer.from(xml, 'utf8') : xml;
  return Buffer.concat([Buffer.from(`${body.length}\n`, 'ascii'), body]);
}

/** Sends requests and resolves each with its reply document, in order. */
export interface RequestChannel {
  send(xml: string | Buffer): Promise<string>;
  close(): void;
}

/** Length framing: one persistent connection; replies are read by their length prefix. */
export class PersistentChannel implements RequestChannel {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly waiting: Array<{ resolve: (reply: string) => void; reject: (error: Error) => void }> = [];
  private failure: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    const fail = (error: Error) => {
      this.failure ??= error;
      for (const waiter of this.waiting.splice(0)) waiter.reject(this.failure);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed by the server')));
  }

  static open(host: string, port: number): Promise<PersistentChannel> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port }, () => {
        socket.off('error', reject);
        resolve(new PersistentChannel(socket));
      });
      socket.once('error', reject);
    });
  }

  send(xml: string | Buffer): Promise<string> {
    if (this.failure) return Promise.reject(this.failure);
    const reply = new Promise<string>((resolve, reject) => this.waiting.push({ resolve, reject }));
    this.socket.write(frameRequest(xml));
    return reply;
  }

  close(): void {
    this.socket.end();
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    let buffer = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.buffered);
    for (;;) {
      const newline = buffer.indexOf(0x0a);
      if (newline < 0) break;
      const length = Number(buffer.subarray(0, newline).toString('ascii'));
      if (buffer.length < newline + 1 + length) break;
      const reply = buffer.subarray(newline + 1, newline + 1 + length).toString('utf8');
      buffer = buffer.subarray(newline + 1 + length);
      this.waiting.shift()?.resolve(reply);
    }
    this.chunks = buffer.length > 0 ? [buffer] : [];
    this.buffered = buffer.length;
  }
}

/** Bare framing: a new connection per request; the reply is everything until the server closes. */
export class OneShotChannel implements RequestChannel {
  constructor(private readonly host: string, private readonly port: number) {}

  send(xml: string | Buffer): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = net.connect({ host: this.host, port: this.port }, () => socket.write(frameRequest(xml)));
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    });
  }

  close(): void {}
}

export async function openChannel(framing: Framing, host: string, port: number): Promise<RequestChannel> {
  return framing === 'length' ? PersistentChannel.open(host, port) : new OneShotChannel(host, port);
}
