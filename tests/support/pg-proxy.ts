/**
 * A TCP proxy in front of PostgreSQL that can cut a connection at the moment a chosen
 * message goes through (see CutMode). Optionally it then refuses every new connection
 * for a while, as a PostgreSQL that is down would.
 */
import net from 'node:net';

/**
 * after-reply: PostgreSQL gets the message and runs it to the end (a COMMIT in it commits),
 * but its reply is dropped. in-flight: the message is handed on and the client's side cut at
 * once, so the client's next move races the message. before-sending: PostgreSQL never gets it.
 */
export type CutMode = 'after-reply' | 'in-flight' | 'before-sending';

/** ReadyForQuery: PostgreSQL has answered the whole of a simple-query message. */
const READY_FOR_QUERY = Buffer.from([0x5a, 0, 0, 0, 5]);
type Cut = { matches: (chunk: Buffer) => boolean; mode: CutMode; downMs: number; resolve: () => void };

export class PgProxy {
  private readonly sockets = new Set<net.Socket>();
  private cut: Cut | null = null;
  private downUntil = 0;
  /** Connections refused while "down". */
  refused = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<PgProxy> {
    let proxy: PgProxy | null = null;
    const server = net.createServer((client) => proxy?.accept(client, target));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new PgProxy(server, (server.address() as net.AddressInfo).port);
    return proxy;
  }

  /** A URL like `url` (user, database) that goes through this proxy. */
  urlFor(url: string): string {
    const parsed = new URL(url);
    parsed.hostname = '127.0.0.1';
    parsed.port = String(this.port);
    return parsed.toString();
  }

  /**
   * Arms one cut: the first client message chunk that `matches` is cut as `mode` says,
   * then for downMs new connections are refused. Resolves once the cut happened.
   */
  cutOnce(matches: (chunk: Buffer) => boolean, mode: CutMode, downMs = 0): Promise<void> {
    return new Promise((resolve) => {
      this.cut = { matches, mode, downMs, resolve };
    });
  }

  private accept(client: net.Socket, target: { host: string; port: number }): void {
    if (Date.now() < this.downUntil) {
      this.refused++;
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const forget = (socket: net.Socket) => () => this.sockets.delete(socket);
    client.on('close', forget(client));
    upstream.on('close', forget(upstream));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('data', (chunk: Buffer) => {
      const cut = this.cut;
      if (cut?.matches(chunk)) {
        this.cut = null;
        // A PostgreSQL that goes down takes every connection with it.
        const goDown = () => {
          this.downUntil = Date.now() + cut.downMs;
          if (cut.downMs > 0) for (const socket of this.sockets) if (socket !== upstream) socket.destroy();
        };
        const finish = () => {
          goDown();
          client.destroy();
          upstream.destroy();
          cut.resolve();
        };
        if (cut.mode === 'before-sending') {
          finish();
        } else if (cut.mode === 'in-flight') {
          // The message, then end of input: PostgreSQL reads no further until it has replied,
          // so it runs the message to its end unless something stops it first.
          upstream.end(chunk);
          goDown();
          client.destroy();
          cut.resolve();
        } else {
          // The reply is held back from the client, who then loses the connection.
          swallowing = true;
          let reply = Buffer.alloc(0);
          upstream.on('data', (part: Buffer) => {
            reply = Buffer.concat([reply, part]);
            if (reply.includes(READY_FOR_QUERY)) finish();
          });
          upstream.write(chunk);
        }
        return;
      }
      upstream.write(chunk);
    });
    let swallowing = false;
    upstream.on('data', (chunk: Buffer) => {
      if (!swallowing && !client.destroyed) client.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
