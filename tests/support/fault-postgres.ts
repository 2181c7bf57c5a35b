/**
 * A disposable PostgreSQL cluster of the test's own (initdb into a temporary
 * directory), so it can be restarted and crashed without touching the shared one.
 * As root, every PostgreSQL binary runs as the `postgres` OS user.
 */
import { spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './process.js';
import { program } from './requirements.js';

/** PG_BIN, else Debian's newest /usr/lib/postgresql/N/bin, else whatever PATH finds. */
function serverBinDirectory(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((name) => /^[0-9]+$/.test(name))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const found = versions
    .map((version) => path.join(root, version, 'bin'))
    .find((dir) => existsSync(path.join(dir, 'initdb')));
  return found ?? '';
}

const PG_BIN = serverBinDirectory();

/** Tests that make a cluster of their own need PostgreSQL's server programs (initdb, pg_ctl). */
export const POSTGRES_SERVER = program(
  'initdb',
  'apt-get install -y postgresql',
  ['--version'],
  path.join(PG_BIN, 'initdb'),
);

function run(command: string, args: string[]): Promise<string> {
  const asRoot = process.getuid?.() === 0;
  const [file, argv] = asRoot
    ? ['runuser', ['-u', 'postgres', '--', path.join(PG_BIN, command), ...args]]
    : [path.join(PG_BIN, command), args];
  return new Promise((resolve, reject) => {
    // Asynchronous on purpose: the test's load keeps running while pg_ctl waits.
    const child = spawn(file as string, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    // 'exit', not 'close': a postmaster started by pg_ctl may inherit the pipes and keep them open.
    child.once('exit', (code) =>
      code === 0 ? resolve(output) : reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${output}`)),
    );
  });
}

export class DisposableCluster {
  private stopped = false;
  private victims: number[] = [];

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly settings: string[],
  ) {}

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  /** The cluster's own `postgres` database (trust auth). */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** settings: extra `-c name=value` server settings, e.g. to hold async commits in memory for long. */
  static async create(settings: string[] = []): Promise<DisposableCluster> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fault-pg-'));
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
    }
    const cluster = new DisposableCluster(dir, await freePort(), settings);
    try {
      await run('initdb', [
        '-D',
        cluster.dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '-E',
        'UTF8',
        '--no-sync',
        '--no-instructions',
      ]);
      await cluster.start();
    } catch (error) {
      await cluster.remove();
      throw error;
    }
    return cluster;
  }

  start(): Promise<string> {
    return run('pg_ctl', [
      '-D',
      this.dataDir,
      '-l',
      path.join(this.dir, 'server.log'),
      '-w',
      '-t',
      '60',
      '-o',
      [
        `-p ${this.port} -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=60`,
        ...this.settings.map((setting) => `-c ${setting}`),
      ].join(' '),
      'start',
    ]);
  }

  /** `pg_ctl restart -m fast|immediate`: connections are cut; immediate is a crash (recovery at start). */
  restart(mode: 'fast' | 'immediate'): Promise<string> {
    return run('pg_ctl', [
      '-D',
      this.dataDir,
      '-l',
      path.join(this.dir, 'server.log'),
      '-m',
      mode,
      '-w',
      '-t',
      '60',
      'restart',
    ]);
  }

  /**
   * A crash of PostgreSQL itself: SIGKILL to the postmaster and every process it
   * started. The postmaster is stopped first (SIGSTOP), so it cannot fork a new
   * backend between the listing and the kill; then the children die, then it.
   * Whatever was only in its shared memory (WAL not yet written out) is gone;
   * start() then runs crash recovery. Returns how many were killed.
   */
  killEveryProcess(): number {
    const postmaster = Number(readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(postmaster, 'SIGSTOP');
    const children: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === postmaster) children.push(Number(entry));
      } catch {
        // gone already
      }
    }
    for (const pid of [...children, postmaster]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    this.victims = [...children, postmaster];
    return this.victims.length;
  }

  /** After killEveryProcess: resolves once none of them runs (a new postmaster refuses to start before). */
  async crashed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    // A zombie counts as present: the new postmaster's check of the old pid would still succeed.
    const present = (pid: number): boolean => {
      try {
        readFileSync(`/proc/${pid}/stat`, 'utf8');
        return true;
      } catch {
        return false;
      }
    };
    while (this.victims.some(present)) {
      if (Date.now() > deadline)
        throw new Error(`PostgreSQL processes still present: ${this.victims.filter(present).join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** The end of the server log, for assertion messages. */
  logTail(bytes = 3000): string {
    try {
      return readFileSync(path.join(this.dir, 'server.log'), 'utf8').slice(-bytes);
    } catch {
      return '(no server log)';
    }
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
