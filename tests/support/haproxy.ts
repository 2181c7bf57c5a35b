/**
 * A real TCP load balancer for tests: HAProxy (Debian package `haproxy`) run as
 * a child process of the test with a config of its own in a temporary
 * directory (never the system service). mode tcp, balance roundrobin, TCP
 * health checks, no stats page; a stats socket answers `show stat` so tests
 * can see how many sessions each backend received.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './process.js';
import { program } from './requirements.js';
import { sleep } from './waiting.js';

export const HAPROXY_BINARY = process.env.HAPROXY ?? 'haproxy';

/** Tests that start a balancer need this (see requirements.ts): pending, with this command, where it is missing. */
export const HAPROXY = program('haproxy', 'apt-get install -y haproxy', ['-v'], HAPROXY_BINARY);

/** One row of `show stat` for a backend server, the fields tests use. */
export type BackendStat = {
  name: string;
  /** UP, DOWN, MAINT, "UP 1/2" while changing. */
  status: string;
  /** Sessions (TCP connections) HAProxy sent to this server since start. */
  sessions: number;
  /** Last health check result, e.g. L4OK, L4CON. */
  checkStatus: string;
};

export type Balancer = {
  port: number;
  config: string;
  /** Everything haproxy wrote to stderr (it logs only warnings and alerts with -db). */
  output: () => string;
  stats: () => Promise<BackendStat[]>;
  /** Resolves once every backend passed a health check and is UP. */
  waitUntilAllUp: (timeoutMs?: number) => Promise<BackendStat[]>;
  /** Resolves once the named backend is DOWN. */
  waitUntilDown: (name: string, timeoutMs?: number) => Promise<void>;
  stop: () => Promise<void>;
};

/** Every haproxy this module started and has not stopped yet: killed at exit whatever happens. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function writeConfig(dir: string, frontendPort: number, backends: Array<{ name: string; port: number }>): string {
  const socket = path.join(dir, 'haproxy.sock');
  const config = [
    'global',
    '  maxconn 4096',
    `  stats socket ${socket} mode 600 level user`,
    '',
    'defaults',
    '  mode tcp',
    '  balance roundrobin',
    '  timeout connect 2s',
    '  timeout client 15s',
    '  timeout server 15s',
    '  timeout check 1s',
    // A connection refused by a backend that just went away is retried, on another server.
    '  retries 2',
    '  option redispatch',
    '',
    'frontend exchange',
    `  bind 127.0.0.1:${frontendPort}`,
    '  default_backend exchange_servers',
    '',
    'backend exchange_servers',
    ...backends.map(({ name, port }) => `  server ${name} 127.0.0.1:${port} check inter 300ms fall 2 rise 1`),
    '',
  ].join('\n');
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, config);
  return file;
}

function askSocket(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: socketPath }, () => socket.write(`${command}\n`));
    let answer = '';
    socket.setTimeout(2_000, () => socket.destroy(new Error(`no answer to "${command}" on ${socketPath}`)));
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
  });
}

/** `show stat` CSV: the header line names the fields ("# pxname,svname,..."). */
export function parseShowStat(csv: string, backend: string): BackendStat[] {
  const lines = csv.split('\n').filter((line) => line.length > 0);
  const header = (lines[0] ?? '').replace(/^# /, '').split(',');
  const field = (row: string[], name: string) => row[header.indexOf(name)] ?? '';
  return lines
    .slice(1)
    .map((line) => line.split(','))
    .filter((row) => field(row, 'pxname') === backend && !['BACKEND', 'FRONTEND'].includes(field(row, 'svname')))
    .map((row) => ({
      name: field(row, 'svname'),
      status: field(row, 'status'),
      sessions: Number(field(row, 'stot')),
      checkStatus: field(row, 'check_status'),
    }));
}

/** Starts haproxy in front of the given 127.0.0.1 ports; rejects with its output when it does not come up. */
export async function startBalancer(backendPorts: number[]): Promise<Balancer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'haproxy-'));
  const port = await freePort();
  const backends = backendPorts.map((backendPort, index) => ({ name: `s${index + 1}`, port: backendPort }));
  const configFile = writeConfig(dir, port, backends);
  const socketPath = path.join(dir, 'haproxy.sock');
  // -db: stay in the foreground, no daemon, so the child is the balancer itself.
  const child = spawn(HAPROXY_BINARY, ['-f', configFile, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let spawnError: Error | null = null;
  child.once('error', (error) => (spawnError = error));
  const exited = new Promise<void>((resolve) =>
    child.once('close', () => {
      running.delete(child);
      resolve();
    }),
  );

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && !spawnError) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const stats = async () => parseShowStat(await askSocket(socketPath, 'show stat'), 'exchange_servers');

  // Up once the stats socket answers with every backend listed.
  for (let attempt = 0; ; attempt++) {
    if (spawnError || child.exitCode !== null || attempt >= 100) {
      await stop();
      throw new Error(`haproxy did not start (${spawnError ?? `exit ${child.exitCode}`}):\n${output}`);
    }
    try {
      if ((await stats()).length === backends.length) break;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }

  const poll = async (done: (rows: BackendStat[]) => boolean, what: string, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const rows = await stats();
      if (done(rows)) return rows;
      if (Date.now() > deadline)
        throw new Error(`haproxy: ${what} within ${timeoutMs} ms; show stat: ${JSON.stringify(rows)}`);
      await sleep(100);
    }
  };
  return {
    port,
    config: configFile,
    output: () => output,
    stats,
    waitUntilAllUp: (timeoutMs = 10_000) =>
      poll(
        (rows) => rows.every((row) => row.status === 'UP' && row.checkStatus === 'L4OK'),
        'not every backend UP',
        timeoutMs,
      ),
    waitUntilDown: async (name, timeoutMs = 10_000) => {
      await poll((rows) => rows.find((row) => row.name === name)?.status === 'DOWN', `${name} not DOWN`, timeoutMs);
    },
    stop,
  };
}
