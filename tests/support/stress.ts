/** Runs the stress client (dist/client/stress.js) as a process, as a user would. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from './process.js';

/** The fields of `exchange-stress --json` the tests read. */
export type StressSummary = {
  requests: number; orders: number; failedRequests: number;
  errors: Record<string, number>;
  latencyMs: Record<string, number>;
  invariants: { checked: string; violations: string[] };
};

export function runStress(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // No DATABASE_URL from the environment: each test says whether SQL verification is used.
    const env = { ...process.env, DATABASE_URL: '' };
    const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist/client/stress.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
