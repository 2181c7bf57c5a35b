/** Runs the clients (dist/client/stress.js, dist/client/send.js) as processes, as a user would. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from './process.js';

/** The fields of `exchange-stress --json` the tests read. */
export type StressSummary = {
  framing: string;
  requests: number;
  orders: number;
  failedRequests: number;
  errors: Record<string, number>;
  rejections: Record<string, number>;
  latencyMs: Record<string, number>;
  latencyMsByKind: Record<'order' | 'query' | 'cancel', Record<string, number>>;
  invariants: { checked: string; violations: string[] };
};

export type ClientRun = {
  /** null when it was killed at the deadline (or by a signal). */
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** It had to be killed at the deadline: it hung. */
  timedOut: boolean;
};

export type RunOptions = {
  /** Kill the process (SIGKILL) after this long, so a hang fails the test instead of stalling it. */
  timeoutMs?: number;
  env?: Record<string, string>;
};

function run(script: string, args: string[], options: RunOptions): Promise<ClientRun> {
  return new Promise((resolve) => {
    // No DATABASE_URL from the environment: each test says whether SQL verification is used.
    const env = { ...process.env, DATABASE_URL: '', REPLY_FRAMING: '', ...options.env };
    const started = Date.now();
    const child = spawn(process.execPath, [path.join(PROJECT_ROOT, script), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 110_000);
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started, timedOut });
    });
  });
}

export function runStress(args: string[], options: RunOptions = {}): Promise<ClientRun> {
  return run('dist/client/stress.js', args, options);
}

/** The operator's CLI (`exchange-admin`). */
export function runAdmin(args: string[], options: RunOptions = {}): Promise<ClientRun> {
  return run('dist/client/admin.js', args, options);
}

/** The CLI client (`npm run client`). */
export function runClient(args: string[], options: RunOptions = {}): Promise<ClientRun> {
  return run('dist/client/send.js', args, options);
}
