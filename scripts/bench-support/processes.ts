/**
 * Child processes, tracked so that a failure or Ctrl-C can stop every one of them, plus the
 * small helpers that go with running them (a free port, sleeping).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

const liveChildren = new Set<ChildProcess>();

/** Remembers a child until it closes, so stopAllChildren() can reach it. */
export function track(child: ChildProcess): ChildProcess {
  liveChildren.add(child);
  child.once('close', () => liveChildren.delete(child));
  return child;
}

/** SIGTERM to every tracked child still running (only ours: nothing is killed by name). */
export function stopAllChildren(): void {
  for (const child of liveChildren) child.kill('SIGTERM');
}

export type Finished = { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string };

/** Runs a command to completion, collecting its output. */
export function runProcess(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

export { setTimeout as sleep } from 'node:timers/promises';
