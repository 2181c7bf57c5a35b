/** Minimal test clients speaking the wire protocol over real TCP sockets; bytes go through the codec. */
import net from 'node:net';
import { ReplyDecoder, frameRequest } from '../../server/protocol/framing.js';

export { frameRequest };

/** Bare framing: send raw bytes, read until the server closes. */
export function sendRaw(
  port: number,
  data: Buffer | string | Array<Buffer | string>,
  options: { halfClose?: boolean; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `no close within ${options.timeoutMs ?? 10_000} ms; got ${JSON.stringify(Buffer.concat(chunks).toString())}`,
        ),
      );
    }, options.timeoutMs ?? 10_000);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    socket.on('connect', () => {
      for (const part of Array.isArray(data) ? data : [data]) socket.write(part);
      if (options.halfClose) socket.end();
    });
  });
}

/** Bare framing, one well-formed request. */
export function sendRequest(port: number, xml: string): Promise<string> {
  return sendRaw(port, frameRequest(xml));
}

/** Length framing: a persistent connection, replies read by their length prefix, in order. */
export class LengthClient {
  private readonly decoder = new ReplyDecoder('length');
  private waiting: Array<{ resolve: (reply: string) => void; reject: (error: Error) => void }> = [];
  private closedError: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    const fail = (error: Error) => {
      this.closedError = error;
      for (const waiter of this.waiting.splice(0)) waiter.reject(this.closedError);
    };
    socket.on('data', (chunk: Buffer) => {
      for (const event of this.decoder.push(chunk)) {
        if (event.type === 'reply') {
          this.waiting.shift()?.resolve(event.xml);
        } else {
          // Not a length-framed reply (say, a bare-mode server): fail loudly instead of waiting.
          fail(event.error);
          socket.destroy();
        }
      }
    });
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static connect(port: number): Promise<LengthClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(new LengthClient(socket)));
      socket.once('error', reject);
    });
  }

  /** This end's port: with the server's port, it names the connection (see process.ts connectionOwner). */
  get localPort(): number {
    return this.socket.localPort as number;
  }

  send(xml: string): Promise<string> {
    return this.sendRaw(frameRequest(xml));
  }

  sendRaw(data: Buffer | string): Promise<string> {
    if (this.closedError) return Promise.reject(this.closedError);
    const reply = new Promise<string>((resolve, reject) => this.waiting.push({ resolve, reject }));
    this.socket.write(data);
    return reply;
  }

  close(): void {
    this.socket.end();
  }
}

/** One request on its own length-framed connection, so parallel calls are parallel transactions. */
export async function sendOnce(port: number, xml: string): Promise<string> {
  const client = await LengthClient.connect(port);
  try {
    return await client.send(xml);
  } finally {
    client.close();
  }
}
