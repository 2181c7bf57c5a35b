/**
 * The stress client (dist/client/stress.js) as a child process against a running server:
 * length framing, --json, the SPEC invariants checked in SQL afterwards, and the CPU use of
 * server, PostgreSQL and client sampled over (about) the measured window.
 */
import { spawn } from 'node:child_process';
import { cpuSnapshot, cpuUse, type CpuSnapshot, type CpuUse } from './cpu.js';
import { isRecord, numberField } from './json.js';
import { beginPgWindow, endPgWindow, postmasterPid, type PgWindow } from './pg-costs.js';
import { track } from './processes.js';
import { progress } from './progress.js';

export type Latency = { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
export type StressResult = {
  requests: number;
  requestsPerSecond: number;
  orders: number;
  ordersPerSecond: number;
  latencyMs: Latency;
  errors: Record<string, number>;
  failedRequests: number;
  invariants: { checked: 'sql' | 'protocol' | 'none'; violations: string[] };
};

/** Checks the stress client's JSON against the shape the benchmarks rely on. */
export function parseStressJson(stdout: string): StressResult {
  // One JSON object is promised; take the outermost braces in case anything else slipped onto stdout.
  const text = stdout.slice(stdout.indexOf('{'), stdout.lastIndexOf('}') + 1);
  const parsed: unknown = JSON.parse(text);
  if (!isRecord(parsed)) throw new Error('stress JSON is not an object');
  const latency = parsed.latencyMs;
  const invariants = parsed.invariants;
  const errors = parsed.errors;
  if (!isRecord(latency) || !isRecord(invariants)) throw new Error('stress JSON lacks latencyMs or invariants');
  const checked = invariants.checked;
  const violations = invariants.violations;
  if (checked !== 'sql' && checked !== 'protocol' && checked !== 'none')
    throw new Error(`stress JSON: invariants.checked is ${String(checked)}`);
  if (!Array.isArray(violations)) throw new Error('stress JSON: invariants.violations is not an array');
  const field = (record: Record<string, unknown>, key: string): number => numberField(record, key, 'stress JSON');
  return {
    requests: field(parsed, 'requests'),
    requestsPerSecond: field(parsed, 'requestsPerSecond'),
    orders: field(parsed, 'orders'),
    ordersPerSecond: field(parsed, 'ordersPerSecond'),
    latencyMs: {
      p50: field(latency, 'p50'),
      p90: field(latency, 'p90'),
      p99: field(latency, 'p99'),
      p999: field(latency, 'p999'),
      max: field(latency, 'max'),
      mean: field(latency, 'mean'),
    },
    errors: isRecord(errors)
      ? Object.fromEntries(
          Object.entries(errors).filter((entry): entry is [string, number] => typeof entry[1] === 'number'),
        )
      : {},
    failedRequests: field(parsed, 'failedRequests'),
    invariants: { checked, violations: violations.map(String) },
  };
}

export type StressLoad = {
  /** The stress client script. */
  client: string;
  connections: number;
  seconds: number;
  warmup: number;
  /** Workload flags (--accounts, --symbols, --seed, --mix, --cross, --rate, ...). */
  workload: string[];
};

export type StressOutcome = {
  result: StressResult | null;
  exitCode: number | null;
  stderrTail: string;
  cpu: CpuUse | null;
  postgres: PgWindow | null;
};

/** The stress client's command line (without the node binary), as run and as reports state it. */
export function stressArgs(load: StressLoad, port: number | string, databaseUrl: string): string[] {
  return [
    load.client,
    '--port',
    String(port),
    '--framing',
    'length',
    '--connections',
    String(load.connections),
    '--seconds',
    String(load.seconds),
    '--warmup',
    String(load.warmup),
    ...load.workload,
    '--json',
    // With the database URL the client checks the SPEC invariants in SQL after the run.
    '--database-url',
    databaseUrl,
  ];
}

export async function runStressClient(
  load: StressLoad,
  server: { pid: number; port: number },
  databaseUrl: string,
): Promise<StressOutcome> {
  const postmaster = await postmasterPid(databaseUrl);
  const child = track(
    spawn(process.execPath, stressArgs(load, server.port, databaseUrl), { stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  let stdout = '';
  let stderr = '';
  // CPU use and PostgreSQL's work over exactly the measured window, which the client marks on stderr (--json).
  let windowStart: CpuSnapshot | null = null;
  let cpu: CpuUse | null = null;
  let pgStart: ReturnType<typeof beginPgWindow> | null = null;
  let pgWindow: Promise<PgWindow | null> = Promise.resolve(null);
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (!windowStart && stderr.includes('{"phase":"measuring"}')) {
      windowStart = cpuSnapshot();
      pgStart = beginPgWindow(databaseUrl);
    }
    if (windowStart && !cpu && child.pid !== undefined && stderr.includes('{"phase":"measured"}')) {
      cpu = cpuUse(windowStart, cpuSnapshot(), server.pid, child.pid, postmaster);
      const started = pgStart;
      if (started) pgWindow = started.then((start) => endPgWindow(databaseUrl, start)).catch(() => null);
    }
  });
  const finished = new Promise<number | null>((resolve) => {
    child.once('error', (error) => {
      stderr += String(error);
      resolve(null);
    });
    child.once('close', (code) => resolve(code));
  });

  const exitCode = await finished;
  const stderrTail = stderr.slice(-3000);
  let result: StressResult | null = null;
  try {
    result = parseStressJson(stdout);
  } catch (error) {
    progress(
      `could not read the stress client's JSON (${error instanceof Error ? error.message : String(error)}); stdout was: ${stdout.slice(0, 500)}`,
    );
  }
  return { result, exitCode, stderrTail, cpu, postgres: await pgWindow };
}
