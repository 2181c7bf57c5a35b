/** The real server as a child process (dist/server/main.js), for tests that need a process of its own. */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SERVER_ENTRY = path.join(PROJECT_ROOT, 'dist/server/main.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

export type ServerProcess = {
  port: number;
  child: ChildProcess;
  /** Everything the server wrote to stderr so far (JSON log lines). */
  log: () => string;
  /** Sends SIGTERM and resolves with the exit code once its output is flushed. */
  stop: () => Promise<number | null>;
};

/** `command` replaces `node dist/server/main.js` (e.g. the container entrypoint script). */
export async function startServerProcess(
  env: Record<string, string>,
  command: string[] = [process.execPath, SERVER_ENTRY],
  options: { waitForListening?: boolean } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  const [program, ...args] = command as [string, ...string[]];
  const child = spawn(program, args, {
    // One process unless the test asks for workers (the server's default is one per core).
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', WORKERS: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  for (
    let attempt = 0;
    options.waitForListening !== false && attempt < 200 && !log.includes('"msg":"exchange server listening"');
    attempt++
  ) {
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (options.waitForListening !== false && !log.includes('listening'))
    throw new Error(`server did not start:\n${log}`);
  return {
    port,
    child,
    log: () => log,
    stop: () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Runs the server to its exit (for starts that must fail); killed at the deadline, so a hang fails the test. */
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
