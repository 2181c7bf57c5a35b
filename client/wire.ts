/**
 * Client connections to an exchange server, in either reply framing or detecting the
 * server's. Bytes are framed and unframed by the one wire codec (server/protocol/framing.ts);
 * this file owns sockets: connecting (with backoff while the server refuses), pairing
 * replies with requests, and saying plainly what went wrong.
 */
import net from 'node:net';
import {
  ReplyDecoder,
  WireError,
  frameRequest,
  type ReplyEvent,
  type ReplyFraming,
} from '../server/protocol/framing.js';
import { setTimeout as sleep } from 'node:timers/promises';

export { WireError, frameRequest };
export type Framing = ReplyFraming;
/** 'auto' takes whichever framing the server's first reply shows. */
export type FramingChoice = Framing | 'auto';

export function parseFramingChoice(text: string): FramingChoice | null {
  return text === 'bare' || text === 'length' || text === 'auto' ? text : null;
}

/**
 * - refused: nothing listens there (ECONNREFUSED), or the connection was reset before it
 *   was up (a server dying with it in its backlog), still after backing off;
 * - timeout: no answer to the connection attempt;
 * - unreachable: no route, or the name does not resolve;
 * - lost: the connection broke (or the server closed it) while a reply was awaited, so the
 *   request's outcome is unknown.
 */
export type ConnectionErrorCode = 'refused' | 'timeout' | 'unreachable' | 'lost';

export class ConnectionError extends Error {
  override name = 'ConnectionError';

  constructor(
    readonly code: ConnectionErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export type ConnectOptions = {
  /**
   * While the server refuses connections, keep trying (backing off from 50 ms to 1 s) for this
   * long: a server that is restarting comes back; one that is gone is given up on. Nothing was
   * sent on a refused connection, so trying again can never apply a request twice.
   */
  retryRefusedForMs?: number;
  /** Give up on one connection attempt after this long. */
  connectTimeoutMs?: number;
};

const DEFAULTS: Required<ConnectOptions> = { retryRefusedForMs: 2_000, connectTimeoutMs: 5_000 };

function connectOnce(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectionError('timeout', `cannot connect to ${host}:${port}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      if (error.code === 'ECONNREFUSED') {
        reject(new ConnectionError('refused', `cannot connect to ${host}:${port}: connection refused`));
      } else if (error.code === 'ECONNRESET') {
        // Reset before it was up: nothing was sent, so it is tried again like a refusal.
        reject(new ConnectionError('refused', `cannot connect to ${host}:${port}: connection reset while connecting`));
      } else {
        reject(new ConnectionError('unreachable', `cannot connect to ${host}:${port}: ${error.code ?? error.message}`));
      }
    };
    socket.once('error', onError);
  });
}

/** Connects, backing off while the server refuses; a server still refusing after the budget is gone. */
export async function connect(host: string, port: number, options: ConnectOptions = {}): Promise<net.Socket> {
  const { retryRefusedForMs, connectTimeoutMs } = { ...DEFAULTS, ...options };
  const started = Date.now();
  let delayMs = 50;
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      const socket = await connectOnce(host, port, connectTimeoutMs);
      socket.setNoDelay(true);
      return socket;
    } catch (error) {
      const elapsed = Date.now() - started;
      const refused = error instanceof ConnectionError && error.code === 'refused';
      if (!refused) throw error;
      if (elapsed + delayMs > retryRefusedForMs) {
        const tried = attempts === 1 ? '' : ` (${attempts} attempts over ${(elapsed / 1000).toFixed(1)} s)`;
        throw new ConnectionError('refused', `${(error as ConnectionError).message}${tried}; is the server running?`);
      }
      await sleep(delayMs);
      delayMs = Math.min(delayMs * 2, 1_000);
    }
  }
}

/** Sends requests and resolves each with its reply document, in order. */
export interface RequestChannel {
  send(xml: string | Buffer): Promise<string>;
  close(): void;
  /** The framing the server speaks, once known. */
  readonly framing: Framing | null;
}

type Waiter = { resolve: (reply: string) => void; reject: (error: Error) => void };

/**
 * One socket, its replies decoded as they arrive and handed to the requests in order. Any
 * decoding error (a bad length line, the other framing) fails every waiting request at once
 * and closes the socket: nothing ever waits on bytes it could not read.
 */
class SocketChannel implements RequestChannel {
  private readonly decoder: ReplyDecoder;
  private readonly waiting: Waiter[] = [];
  private failure: Error | null = null;

  constructor(
    private readonly socket: net.Socket,
    framing: FramingChoice,
    where: string,
  ) {
    this.decoder = new ReplyDecoder(framing);
    socket.on('data', (chunk: Buffer) => this.take(this.decoder.push(chunk)));
    socket.on('end', () => this.take(this.decoder.end()));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.fail(new ConnectionError('lost', `connection to ${where} lost: ${error.code ?? error.message}`));
    });
    socket.on('close', () =>
      this.fail(new ConnectionError('lost', `the server at ${where} closed the connection before replying`)),
    );
  }

  get framing(): Framing | null {
    return this.decoder.framing;
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

  private take(events: ReplyEvent[]): void {
    for (const event of events) {
      if (event.type === 'error') {
        this.fail(event.error);
        this.socket.destroy();
        return;
      }
      const waiter = this.waiting.shift();
      if (!waiter) {
        this.fail(new WireError('not-a-reply', 'the server sent a reply to no request'));
        this.socket.destroy();
        return;
      }
      waiter.resolve(event.xml);
    }
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.waiting.splice(0)) waiter.reject(this.failure);
  }
}

/** Length framing: one persistent connection; requests may be pipelined. */
async function openPersistent(
  host: string,
  port: number,
  framing: FramingChoice,
  options: ConnectOptions,
): Promise<SocketChannel> {
  return new SocketChannel(await connect(host, port, options), framing, `${host}:${port}`);
}

/** Bare framing: a new connection per request; the reply is everything until the server closes. */
class OneShotChannel implements RequestChannel {
  readonly framing = 'bare' as const;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly options: ConnectOptions,
  ) {}

  async send(xml: string | Buffer): Promise<string> {
    const channel = await openPersistent(this.host, this.port, 'bare', this.options);
    return channel.send(xml);
  }

  close(): void {}
}

/**
 * Detects the server's framing from its first reply, then behaves as that framing's channel.
 * The first request goes alone (a bare server reads one request per connection); requests
 * sent meanwhile wait for it.
 */
class DetectingChannel implements RequestChannel {
  private settled: RequestChannel | null = null;
  private detecting: Promise<unknown> | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly options: ConnectOptions,
  ) {}

  get framing(): Framing | null {
    return this.settled?.framing ?? null;
  }

  async send(xml: string | Buffer): Promise<string> {
    if (this.settled) return this.settled.send(xml);
    if (this.detecting) {
      await this.detecting.catch(() => undefined);
      return this.send(xml);
    }
    const probe = openPersistent(this.host, this.port, 'auto', this.options).then(async (channel) => {
      const reply = await channel.send(xml);
      this.settled = channel.framing === 'length' ? channel : new OneShotChannel(this.host, this.port, this.options);
      return reply;
    });
    this.detecting = probe;
    try {
      return await probe;
    } finally {
      this.detecting = null;
    }
  }

  close(): void {
    this.settled?.close();
  }
}

/**
 * A channel to the server. 'length' connects at once (so an unreachable server shows here);
 * 'bare' and 'auto' connect per request or on the first one.
 */
export async function openChannel(
  framing: FramingChoice,
  host: string,
  port: number,
  options: ConnectOptions = {},
): Promise<RequestChannel> {
  if (framing === 'length') return openPersistent(host, port, 'length', options);
  if (framing === 'bare') return new OneShotChannel(host, port, options);
  return new DetectingChannel(host, port, options);
}

/** Which framing a server speaks: one harmless request (`<create/>`, which changes nothing) tells. */
export async function detectFraming(host: string, port: number, options: ConnectOptions = {}): Promise<Framing> {
  const channel = await openPersistent(host, port, 'auto', options);
  try {
    await channel.send('<create/>');
    return channel.framing as Framing;
  } finally {
    channel.close();
  }
}

/** A message for people: what went wrong, and for a framing mismatch, what to do about it. */
export function describeFailure(error: unknown): string {
  if (error instanceof WireError && error.code === 'wrong-framing') {
    // The server did answer (in its own framing), so the request took effect.
    return `${error.message}; the request was answered, so it took effect; use --framing ${error.serverFraming ?? 'auto'} (or leave --framing out to detect it)`;
  }
  return error instanceof Error ? error.message : String(error);
}
