/**
 * A disposable PostgreSQL 15 cluster of the test's own (initdb into a temporary
 * directory), so it can be restarted and crashed without touching the shared one.
 * As root, every PostgreSQL binary runs as the `postgres` OS user.
 */
import { spawn } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './process.js';

const PG_BIN = process.env['PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

function run(command: string, args: string[]): Promise<string> {
  const asRoot = process.getuid?.() === 0;
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', path.join(PG_BIN, command), ...args]] : [path.join(PG_BIN, command), args];
  return new Promise((resolve, reject) => {
    // Asynchronous on purpose: the test's load keeps running while pg_ctl waits.
    const child = spawn(file as string, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    // 'exit', not 'close': a postmaster started by pg_ctl may inherit the pipes and keep them open.
    child.once('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${output}`))));
  });
}

export class DisposableCluster {
  private stopped = false;

  private constructor(readonly dir: string, readonly port: number) {}

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  /** The cluster's own `postgres` database (trust auth). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  static async create(): Promise<DisposableCluster> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fault-pg-'));
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
    }
    const cluster = new DisposableCluster(dir, await freePort());
    try {
      await run('initdb', ['-D', cluster.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
      await cluster.start();
    } catch (error) {
      await cluster.remove();
      throw error;
    }
    return cluster;
  }

  start(): Promise<string> {
    return run('pg_ctl', [
      '-D', this.dataDir, '-l', path.join(this.dir, 'server.log'), '-w', '-t', '60',
      '-o', `-p ${this.port} -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=60`, 'start',
    ]);
  }

  /** `pg_ctl restart -m fast|immediate`: connections are cut; immediate is a crash (recovery at start). */
  restart(mode: 'fast' | 'immediate'): Promise<string> {
    return run('pg_ctl', ['-D', this.dataDir, '-l', path.join(this.dir, 'server.log'), '-m', mode, '-w', '-t', '60', 'restart']);
  }

  stop(mode: 'fast' | 'immediate' = 'fast'): Promise<string> {
    return run('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
  }

  /** Stops the cluster (if running) and deletes its directory. Safe to call twice. */
  async remove(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.stop('immediate').catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
