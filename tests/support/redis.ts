/** A disposable Redis server of the test's own (so it can be killed without touching the shared one). */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { program } from './requirements.js';
import { freePort } from './process.js';

/** The shared Redis on this machine; tests keep apart by key prefix (the database instance id). */
export const SHARED_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Tests that start a Redis of their own (this one or fault-redis.ts) need the server program. */
export const REDIS_SERVER = program('redis-server', 'apt-get install -y redis-server', ['--version']);

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      // A Redis with a password answers, but refuses PING before AUTH.
      resolve(/^(\+PONG|-NOAUTH)/.test(data.toString()));
    });
    socket.once('error', () => resolve(false));
  });
}

export class DisposableRedis {
  private child: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    private readonly password: string | null,
  ) {}

  /** With a password, clients must AUTH (requirepass). */
  static async start(options: { password?: string } = {}): Promise<DisposableRedis> {
    const redis = new DisposableRedis(await freePort(), options.password ?? null);
    await redis.restart();
    return redis;
  }

  /** The URL a client uses, with the password when there is one. */
  get url(): string {
    return this.password === null ? `redis://127.0.0.1:${this.port}` : this.urlWithPassword(this.password);
  }

  urlWithPassword(password: string): string {
    return `redis://:${encodeURIComponent(password)}@127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    const auth = this.password === null ? [] : ['--requirepass', this.password];
    this.child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...auth],
      { stdio: 'ignore' },
    );
    for (let attempt = 0; attempt < 100; attempt++) {
      if (await answersPing(this.port)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`redis-server did not start on port ${this.port}`);
  }

  /** kill -9: the cache vanishes mid-run, as in a crash. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
    this.child = null;
  }
}
