/**
 * The real server (dist/server/main.js) as a child process, for tests that need a
 * process of its own: the one place tests spawn it. spawnServer starts it and waits
 * for its "listening" lines; startServerProcess (most tests) and spawnFaultServer
 * (fault-process.ts: a process group the test can kill whole) are its two shapes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SERVER_ENTRY = path.join(PROJECT_ROOT, 'dist/server/main.js');

const LISTENING = '"msg":"exchange server listening"';

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Every process, from /proc: its state letter (Z = zombie, i.e. dead), parent and process group. */
function processTable(): Array<{ pid: number; state: string; parent: number; group: number }> {
  const table: Array<{ pid: number; state: string; parent: number; group: number }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    table.push({ pid: Number(entry), state: fields[0] ?? '?', parent: Number(fields[1]), group: Number(fields[2]) });
  }
  return table;
}

/** Processes of a process group, with their state letter. */
export function groupMembers(pgid: number): Array<{ pid: number; state: string }> {
  return processTable()
    .filter((entry) => entry.group === pgid)
    .map(({ pid, state }) => ({ pid, state }));
}

/** Live children of a process (a server's workers). */
export function childPids(parent: number): number[] {
  return processTable()
    .filter((entry) => entry.parent === parent && entry.state !== 'Z' && entry.state !== 'X')
    .map((entry) => entry.pid);
}

/**
 * Which of `pids` holds the server side of the local TCP connection from clientPort to
 * serverPort (IPv4), from /proc/net/tcp and each process's file descriptors; null if none.
 * Lets a test see which worker the kernel gave a connection to.
 */
export function connectionOwner(pids: number[], serverPort: number, clientPort: number): number | null {
  const hexPort = (port: number) => port.toString(16).toUpperCase().padStart(4, '0');
  const line = readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .map((text) => text.trim().split(/\s+/))
    .find((fields) => fields[1]?.endsWith(`:${hexPort(serverPort)}`) && fields[2]?.endsWith(`:${hexPort(clientPort)}`));
  const inode = line?.[9];
  if (!inode) return null;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
      } catch {
        // Closed meanwhile.
      }
    }
  }
  return null;
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

export type ServerProcess = {
  port: number;
  pid: number;
  child: ChildProcess;
  /** Everything the server (and its workers) wrote to stderr so far (JSON log lines). */
  log: () => string;
  /** Resolves once the process exited and its output was flushed. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends SIGTERM and resolves with the exit code once its output is flushed. */
  stop: () => Promise<number | null>;
  /** Sends a signal to the process alone, or to its whole group (processGroup only; like Ctrl-C in a terminal). */
  signal: (signal: NodeJS.Signals, target: 'primary' | 'group') => void;
  /** kill -9 of the process, or of every process in its group; resolves once none of them is alive. */
  killGroup: () => Promise<void>;
};

export type SpawnServerOptions = {
  /** Replaces `node dist/server/main.js` (e.g. the container entrypoint script). */
  command?: string[];
  /** Reuse a port (a restart); default: a free one. A port still held is retried briefly. */
  port?: number;
  /** How many "listening" lines to wait for (one per worker); 0: return at once. Default 1. */
  listeners?: number;
  startTimeoutMs?: number;
  /**
   * Start it in a process group of its own, so that SIGKILL of the group takes the primary
   * and every worker down at once (WORKERS > 1), like a machine crash.
   */
  processGroup?: boolean;
};

/** Every server spawned and not known to be gone, for killAllServers. */
const running = new Set<ServerProcess>();

function launch(env: Record<string, string>, port: number, options: SpawnServerOptions): ServerProcess {
  const [program, ...args] = (options.command ?? [process.execPath, SERVER_ENTRY]) as [string, ...string[]];
  const child = spawn(program, args, {
    // One process unless the test asks for workers (the server's default is one per 4 cores).
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', WORKERS: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: options.processGroup ?? false,
  });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  // 'close', not 'exit': the shutdown log lines may still be in the stderr pipe at exit.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  const pid = child.pid as number;
  const group = options.processGroup ?? false;
  const alive = () => (group ? liveGroupMembers(pid).length > 0 : child.exitCode === null && child.signalCode === null);
  const server: ServerProcess = {
    port,
    pid,
    child,
    log: () => log,
    exited,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return (await exited).code;
    },
    signal: (signal, target) => {
      try {
        process.kill(target === 'group' && group ? -pid : pid, signal);
      } catch {
        // already gone
      }
    },
    killGroup: async () => {
      if (group) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      } else {
        child.kill('SIGKILL');
      }
      await exited;
      if (group && !(await waitUntil(() => liveGroupMembers(pid).length === 0, 5_000))) {
        throw new Error(`processes of group ${pid} survived SIGKILL: ${liveGroupMembers(pid).join(', ')}`);
      }
      running.delete(server);
    },
  };
  void exited.then(() => {
    if (!alive()) running.delete(server);
  });
  running.add(server);
  return server;
}

/** Starts the server and waits until `listeners` processes report listening. */
export async function spawnServer(
  env: Record<string, string>,
  options: SpawnServerOptions = {},
): Promise<ServerProcess> {
  const port = options.port ?? (await freePort());
  const listeners = options.listeners ?? 1;
  const timeoutMs = options.startTimeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const server = launch(env, port, options);
    if (listeners === 0) return server;
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

/** `command` replaces `node dist/server/main.js` (e.g. the container entrypoint script). */
export function startServerProcess(
  env: Record<string, string>,
  command?: string[],
  options: { waitForListening?: boolean } = {},
): Promise<ServerProcess> {
  return spawnServer(env, { command, listeners: options.waitForListening === false ? 0 : 1, startTimeoutMs: 10_000 });
}

/** after() hooks: no server of ours outlives the test file, whatever failed. */
export async function killAllServers(): Promise<void> {
  for (const server of [...running]) await server.killGroup().catch(() => undefined);
}

/**
 * Runs the server to its exit (for starts that must fail); killed at the deadline, so a
 * hang fails the test. The environment is the caller's alone: no port or workers are chosen.
 */
export function runServer(
  env: Record<string, string>,
  timeoutMs: number,
): Promise<{ code: number | null; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SERVER_ENTRY], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, timedOut });
    });
  });
}
