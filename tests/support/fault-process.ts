/**
 * The real server (dist/server/main.js) as a child process in a process group of
 * its own, so a test can kill it for real: SIGKILL of the whole group takes the
 * primary and every worker down at once (WORKERS > 1), like a machine crash.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { SERVER_ENTRY, freePort } from './process.js';

const LISTENING = '"msg":"exchange server listening"';

export type FaultServer = {
  port: number;
  /** The primary's pid, which is also the process group id. */
  pid: number;
  child: ChildProcess;
  /** Everything the server (and its workers) wrote to stderr so far. */
  log: () => string;
  /** Resolves once the primary exited and its output was flushed. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** kill -9 of every process in the group; resolves once none of them is alive. */
  killGroup: () => Promise<void>;
  /** Sends a signal to the primary alone, or to the whole group (like Ctrl-C in a terminal). */
  signal: (signal: NodeJS.Signals, target: 'primary' | 'group') => void;
};

const running = new Set<FaultServer>();

export type SpawnOptions = {
  /** Reuse a port (a restart); default: a free one. */
  port?: number;
  /** How many "listening" lines to wait for (one per worker). */
  listeners?: number;
  startTimeoutMs?: number;
};

/** Processes of a process group, from /proc, with their state letter (Z = zombie, i.e. dead). */
export function groupMembers(pgid: number): Array<{ pid: number; state: string }> {
  const members: Array<{ pid: number; state: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid) members.push({ pid: Number(entry), state: fields[0] ?? '?' });
  }
  return members;
}

export function liveGroupMembers(pgid: number): number[] {
  return groupMembers(pgid)
    .filter((member) => member.state !== 'Z' && member.state !== 'X')
    .map((member) => member.pid);
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

function spawnOnce(env: Record<string, string>, port: number): FaultServer & { logText: () => string } {
  const child = spawn(process.execPath, [SERVER_ENTRY], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', WORKERS: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  const pid = child.pid as number;
  const server: FaultServer & { logText: () => string } = {
    port,
    pid,
    child,
    log: () => log,
    logText: () => log,
    exited,
    killGroup: async () => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await exited;
      if (!(await waitUntil(() => liveGroupMembers(pid).length === 0, 5_000))) {
        throw new Error(`processes of group ${pid} survived SIGKILL: ${liveGroupMembers(pid).join(', ')}`);
      }
      running.delete(server);
    },
    signal: (signal, target) => {
      try {
        process.kill(target === 'group' ? -pid : pid, signal);
      } catch {
        // already gone
      }
    },
  };
  void exited.then(() => {
    if (liveGroupMembers(pid).length === 0) running.delete(server);
  });
  running.add(server);
  return server;
}

/**
 * Starts the server and waits until `listeners` processes report listening.
 * A restart on the same port retries briefly if the port is still held.
 */
export async function spawnFaultServer(env: Record<string, string>, options: SpawnOptions = {}): Promise<FaultServer> {
  const port = options.port ?? (await freePort());
  const listeners = options.listeners ?? 1;
  const timeoutMs = options.startTimeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const server = spawnOnce(env, port);
    const count = () => server.log().split(LISTENING).length - 1;
    await waitUntil(
      () => count() >= listeners || server.child.exitCode !== null || Date.now() > deadline,
      timeoutMs + 1_000,
    );
    if (count() >= listeners) return server;
    const log = server.log();
    await server.killGroup();
    if (/EADDRINUSE/.test(log) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      continue;
    }
    throw new Error(`server did not start (${count()}/${listeners} listening):\n${log}`);
  }
}

/** after() hooks: no server of ours outlives the test file, whatever failed. */
export async function killAllFaultServers(): Promise<void> {
  for (const server of [...running]) await server.killGroup().catch(() => undefined);
}
