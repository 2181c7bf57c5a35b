/**
 * Runs the plan's steps in order, with progress on stderr (run k of n, elapsed, time left), and
 * records what each run measured. Figures are computed from the records elsewhere (figures.ts).
 */
import path from 'node:path';
import type { CpuUse } from './cpu.js';
import { type DatabaseCounters, dropDatabase } from './databases.js';
import { DEFAULT_STRESS_CLIENT, PROJECT_ROOT } from './paths.js';
import type { PgWindow } from './pg-costs.js';
import { pgbenchCommand, preparePgbench, runPgbench } from './pgbench.js';
import {
  configName,
  estimatedSeconds,
  LOADS,
  type PgbenchStep,
  type ServerStep,
  type Step,
  writeQueueOf,
} from './plan.js';
import { progress } from './progress.js';
import { runServerUnderLoad } from './run.js';
import type { WriteLaneTotals } from './server.js';
import { type StressLoad, type StressResult, stressArgs } from './stress.js';
import type { PgTransport } from './transport.js';

/** How every run is made; transport: how the server and pgbench reach PostgreSQL. */
export type Settings = { seconds: number; warmup: number; repeats: number; transport: PgTransport };

export type ServerRecord = {
  step: ServerStep;
  /** When the server was started (ISO time). */
  timestamp: string;
  /** --rate given to the stress client, or null (unpaced). */
  rate: number | null;
  /** The stress client's command line, with placeholders for the port and database. */
  command: string;
  stress: StressResult | null;
  cpu: CpuUse | null;
  /** PostgreSQL's WAL and statements over the measured window. */
  postgres: PgWindow | null;
  serializationRetries: number;
  retriesExhausted: number;
  /** The write lanes' time in transactions, batches and writes over the whole run. */
  writeLane: WriteLaneTotals;
  /** PostgreSQL's counters for the run's database over the whole run, or null if unavailable. */
  database: DatabaseCounters | null;
  /** Why the run counts as failed, or null. */
  failure: string | null;
};
export type PgbenchRecord = { step: PgbenchStep; timestamp: string; tps: number };
export type Results = { servers: ServerRecord[]; pgbench: PgbenchRecord[] };

export const minutes = (seconds: number): string =>
  `${Math.floor(seconds / 60)}:${String(Math.round(seconds % 60)).padStart(2, '0')}`;

/** A step as progress lines name it. */
export function describeStep(step: Step, settings: Settings): string {
  return step.kind === 'pgbench'
    ? `${pgbenchCommand(step.connections, settings.seconds)}, repeat ${step.repeat}/${settings.repeats}`
    : `${configName(step)}, ${step.connections} connections, repeat ${step.repeat}/${settings.repeats}`;
}

const pgbenchDatabase = (connections: number): string => `bench_pgbench_${process.pid}_c${connections}`;

async function runPgbenchStep(step: PgbenchStep, settings: Settings): Promise<PgbenchRecord> {
  const name = pgbenchDatabase(step.connections);
  if (step.repeat === 1) await preparePgbench(name, settings.transport);
  const timestamp = new Date().toISOString();
  const tps = await runPgbench(name, step.connections, settings.seconds, settings.transport);
  progress(`pgbench -N -c ${step.connections} run ${step.repeat}/${step.repeats}: ${tps.toFixed(0)} tps`);
  // Dropped before the server runs, so they do not share the machine with its autovacuum.
  if (step.repeat === step.repeats) await dropDatabase(name);
  return { step, timestamp, tps };
}

/** half-rate's pace: half the requests/s of the same round's mixed run, or null when that run failed. */
function halfOfMixed(step: ServerStep, done: ServerRecord[]): number | null {
  const mixed = done.find(
    (record) =>
      record.step.load === 'mixed' &&
      record.step.connections === step.connections &&
      record.step.repeat === step.repeat &&
      record.step.workers === step.workers &&
      record.step.writeQueue === step.writeQueue &&
      record.step.cpus.join() === step.cpus.join(),
  );
  const peak = mixed?.failure === null ? mixed.stress?.requestsPerSecond : undefined;
  return peak !== undefined && peak > 0 ? Math.max(1, Math.round(peak / 2)) : null;
}

async function runServerStep(step: ServerStep, rate: number | null, settings: Settings): Promise<ServerRecord> {
  const load: StressLoad = {
    client: DEFAULT_STRESS_CLIENT,
    connections: step.connections,
    seconds: settings.seconds,
    warmup: settings.warmup,
    // The seed depends on the repeat only, so every configuration sees the same workload.
    workload: [...LOADS[step.load], '--seed', String(step.repeat), ...(rate === null ? [] : ['--rate', String(rate)])],
  };
  // "mixed_2c_2w_per_worker": the configuration's name, so no two configurations share a database name.
  const config = configName(step).replace(/[^a-z0-9]+/g, '_');
  const { timestamp, outcome, shutdown, database, failure } = await runServerUnderLoad({
    label: `${configName(step)}, ${step.connections} connections, repeat ${step.repeat}${rate === null ? '' : ` at ${rate} requests/s`}`,
    database: `bench_${process.pid}_c${step.connections}_${config}_r${step.repeat}`,
    cpus: step.cpus,
    workers: step.workers,
    writeQueue: writeQueueOf(step),
    load,
    transport: settings.transport,
  });
  const stress = outcome.result;
  // Beyond what runServerUnderLoad fails a run for: retries given up on, invariants not checked in SQL.
  const problems = failure === null ? [] : [failure];
  if (shutdown.retriesExhausted > 0) {
    problems.push(`${shutdown.retriesExhausted} request(s) failed after exhausting serialization retries`);
  }
  if (stress && stress.invariants.checked !== 'sql')
    problems.push(`invariants checked by ${stress.invariants.checked}, not SQL`);
  if (problems.length > (failure === null ? 0 : 1)) progress(`${configName(step)}: FAILED: ${problems.join('; ')}`);
  const command = ['node', ...stressArgs(load, '<port>', '<fresh database>')]
    .map((word) => (path.isAbsolute(word) ? path.relative(PROJECT_ROOT, word) : word))
    .join(' ');
  return {
    step,
    timestamp,
    rate,
    command,
    stress,
    cpu: outcome.cpu,
    postgres: outcome.postgres,
    serializationRetries: shutdown.serializationRetries,
    retriesExhausted: shutdown.retriesExhausted,
    writeLane: shutdown.writeLane,
    database,
    failure: problems.length > 0 ? problems.join('; ') : null,
  };
}

export async function runPlan(plan: Step[], settings: Settings): Promise<Results> {
  const results: Results = { servers: [], pgbench: [] };
  const estimates = plan.map((step) => estimatedSeconds(step, settings));
  const total = estimates.reduce((sum, seconds) => sum + seconds, 0);
  const started = Date.now();
  let estimatedDone = 0;
  for (const [index, step] of plan.entries()) {
    const elapsed = (Date.now() - started) / 1000;
    // The estimate scaled by how the runs so far compared with theirs.
    const pace = estimatedDone > 0 ? elapsed / estimatedDone : 1;
    progress(
      `run ${index + 1} of ${plan.length}: ${describeStep(step, settings)}; ` +
        `elapsed ${minutes(elapsed)}, about ${minutes((total - estimatedDone) * pace)} left`,
    );
    if (step.kind === 'pgbench') {
      results.pgbench.push(await runPgbenchStep(step, settings));
    } else if (step.load === 'half-rate') {
      const rate = halfOfMixed(step, results.servers);
      if (rate === null) progress(`${configName(step)}: skipped, the mixed run of this round failed`);
      else results.servers.push(await runServerStep(step, rate, settings));
    } else {
      results.servers.push(await runServerStep(step, null, settings));
    }
    estimatedDone += estimates[index] ?? 0;
  }
  progress(`${plan.length} runs took ${minutes((Date.now() - started) / 1000)}`);
  return results;
}
