/**
 * A redis-server of the test's own, with a data directory, so it can be
 * crashed (kill -9: comes back with whatever its last dump held), shut down
 * with SHUTDOWN SAVE (comes back WITH the old data loaded), or frozen (SIGSTOP).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './process.js';

/** One RESP command over a fresh connection; resolves with the raw reply (or '' if the server closed). */
export function redisCommand(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`);
    });
    let reply = '';
    socket.setTimeout(5_000, () => {
      socket.destroy();
      reject(new Error(`redis ${args[0]} timed out`));
    });
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.endsWith('\r\n')) socket.end();
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(reply));
  });
}

export class FaultRedis {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  static async start(): Promise<FaultRedis> {
    const redis = new FaultRedis(await freePort(), mkdtempSync(path.join(os.tmpdir(), 'fault-redis-')));
    await redis.restart();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts redis-server on the same port and directory; it loads dump.rdb if there is one. */
  async restart(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--dbfilename',
        'dump.rdb',
        // Snapshots only when asked (SHUTDOWN SAVE); never on its own during a test.
        '--save',
        '3600 1000000',
        '--appendonly',
        'no',
      ],
      { stdio: 'ignore' },
    );
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    for (let attempt = 0; attempt < 200; attempt++) {
      const reply = await redisCommand(this.port, 'PING').catch(() => '');
      if (reply.startsWith('+PONG')) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`redis-server did not start on port ${this.port}`);
  }

  /** kill -9: the cache vanishes mid-run, as in a crash; nothing is saved. */
  async kill(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGCONT');
      this.child.kill('SIGKILL');
    }
    await this.exited;
    this.child = null;
  }

  /** SHUTDOWN SAVE: writes dump.rdb, then exits; a restart loads it (old data comes back). */
  async shutdownSave(): Promise<void> {
    await redisCommand(this.port, 'SHUTDOWN', 'SAVE').catch(() => '');
    await this.exited;
    this.child = null;
  }

  /** SIGSTOP: Redis still holds its connections but answers nothing. */
  freeze(): void {
    this.child?.kill('SIGSTOP');
  }

  thaw(): void {
    this.child?.kill('SIGCONT');
  }

  async dbsize(): Promise<number> {
    const reply = await redisCommand(this.port, 'DBSIZE');
    return Number(reply.replace(/^:/, '').trim());
  }

  async remove(): Promise<void> {
    await this.kill().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
