/** The TCP listener: accepts connections, caps their number, shuts down gracefully. */
import net from 'node:net';
import { ByteBudget } from './byte-budget.js';
import { Connection, type ConnectionHooks, type ConnectionOptions } from './connection.js';
import { log } from '../log.js';
import { problem } from '../errors.js';

export type ListenerOptions = ConnectionOptions & {
  host: string;
  port: number;
  maxConnections: number;
  /** Bytes this process holds for its clients (requests not yet answered, replies not yet sent). */
  maxBufferedBytes: number;
};

export class ExchangeListener {
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  readonly budget: ByteBudget;

  constructor(
    private readonly options: ListenerOptions,
    hooks: ConnectionHooks,
  ) {
    this.budget = new ByteBudget(options.maxBufferedBytes);
    // allowHalfOpen: a client may shut down its sending side and still read the reply.
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (socket) => {
      if (this.connections.size >= options.maxConnections && !this.makeRoom()) {
        this.noteRefused();
        socket.destroy();
        return;
      }
      const connection = new Connection(socket, options, hooks, this.budget);
      this.connections.add(connection);
      socket.once('close', () => this.connections.delete(connection));
    });
  }

  /**
   * At the connection limit, a connection that has sent nothing yet (the oldest first), or
   * else one that has not sent a whole request yet, gives way to the new one: silent
   * connections cannot lock others out. When every connection has sent a request, the new
   * one is refused.
   */
  private makeRoom(): boolean {
    let victim: Connection | undefined;
    for (const connection of this.connections) {
      if (connection.silent) {
        victim = connection;
        break;
      }
      victim ??= connection.waitingForFirstRequest ? connection : undefined;
    }
    if (victim === undefined) return false;
    // Counted out now: it closes within a second.
    this.connections.delete(victim);
    victim.evict(problem('evicted'));
    return true;
  }

  private refusedSinceLog = 0;
  private lastRefusedLog = 0;

  /** One line per 5 s at most: a flood of connections must not flood the log. */
  private noteRefused(): void {
    this.refusedSinceLog++;
    const now = Date.now();
    if (now - this.lastRefusedLog < 5_000) return;
    log.warn('connections refused: connection limit reached, every connection has sent a request', {
      maxConnections: this.options.maxConnections,
      refused: this.refusedSinceLog,
    });
    this.refusedSinceLog = 0;
    this.lastRefusedLog = now;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.options.host, port: this.options.port }, () => {
        this.server.off('error', reject);
        this.server.on('error', (error) => log.error('listener error', { error: error.message }));
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  /**
   * Stop accepting, answer what each connection already received, and let each
   * close once its replies are flushed; whatever is left at the deadline is cut.
   */
  async close(deadlineMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of this.connections) connection.stopAccepting();
    // Not unref'd: this timer is what keeps the process alive until shutdown completes.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), deadlineMs);
    });
    const outcome = await Promise.race([closed, deadline]);
    clearTimeout(timer);
    if (outcome === 'deadline') {
      log.warn('shutdown deadline reached; cutting remaining connections', { open: this.connections.size });
      for (const connection of this.connections) connection.destroy();
      await closed;
    }
  }
}
