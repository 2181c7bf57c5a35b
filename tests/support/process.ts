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
export async function startServerProcess(env: Record<string, string>, command: string[] = [process.execPath, SERVER_ENTRY]): Promise<ServerProcess> {
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
  for (let attempt = 0; attempt < 200 && !log.includes('"msg":"exchange server listening"'); attempt++) {
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (!log.includes('listening')) throw new Error(`server did not start:\n${log}`);
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
