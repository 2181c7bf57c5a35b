/** Minimal test clients speaking the wire protocol over real TCP sockets. */
import net from 'node:net';

export function frameRequest(xml: string): Buffer {
  const body = Buffer.from(xml, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length}\n`), body]);
}

/** Bare framing: send raw bytes, read until the server closes. */
export function sendRaw(port: number, data: Buffer | string | Array<Buffer | string>, options: { halfClose?: boolean; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${options.timeoutMs ?? 10_000} ms; got ${JSON.stringify(Buffer.concat(chunks).toString())}`));
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
  private buffer = Buffer.alloc(0);
  private waiting: Array<{ resolve: (reply: string) => void; reject: (error: Error) => void }> = [];
  private closedError: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.deliver();
    });
    const fail = (error: Error) => {
      this.closedError = error;
      for (const waiter of this.waiting.splice(0)) waiter.reject(error);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static connect(port: number): Promise<LengthClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(new LengthClient(socket)));
      socket.once('error', reject);
    });
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

  private deliver(): void {
    for (;;) {
      const newline = this.buffer.indexOf(0x0a);
      if (newline < 0) return;
      const prefix = this.buffer.subarray(0, newline).toString('ascii');
      if (!/^[0-9]+$/.test(prefix)) {
        // Not a length-framed reply (say, a bare-mode server): fail loudly instead of looping.
        const error = new Error(`reply is not length-framed: ${JSON.stringify(this.buffer.subarray(0, 80).toString('utf8'))}`);
        this.closedError = error;
        for (const waiter of this.waiting.splice(0)) waiter.reject(error);
        this.socket.destroy();
        return;
      }
      const length = Number(prefix);
      if (this.buffer.length < newline + 1 + length) return;
      const reply = this.buffer.subarray(newline + 1, newline + 1 + length).toString('utf8');
      this.buffer = this.buffer.subarray(newline + 1 + length);
      this.waiting.shift()?.resolve(reply);
    }
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
