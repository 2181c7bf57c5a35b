/**
 * One benchmark run: a fresh database, the server pinned to some CPUs with some workers, the
 * stress client against it, the server stopped, PostgreSQL's counters read, the database dropped.
 */
import type { WriteQueue } from '../../server/config.js';
import { createDatabase, databaseCounters, dropDatabase, type DatabaseCounters } from './databases.js';
import { progress } from './progress.js';
import { startServer, type ServerShutdown } from './server.js';
import { runStressClient, type StressLoad, type StressOutcome } from './stress.js';
import { type PgTransport, transportUrl } from './transport.js';

export type ServerRun = {
  /** Names the run in progress lines, e.g. "mixed 2c/1w, 8 connections, repeat 1". */
  label: string;
  /** The scratch database's name (a safe identifier); created fresh, dropped after. */
  database: string;
  cpus: number[];
  workers: number;
  writeQueue: WriteQueue;
  load: StressLoad;
  /** How the server reaches its database; the stress client's SQL checks and the PostgreSQL counters go the same way. */
  transport: PgTransport;
};

export type ServerRunResult = {
  /** When the server was started (ISO time). */
  timestamp: string;
  outcome: StressOutcome;
  shutdown: ServerShutdown;
  /** PostgreSQL's counters for the run's database over the whole run, or null if unavailable. */
  database: DatabaseCounters | null;
  /** Why the run counts as failed, or null. */
  failure: string | null;
};

export async function runServerUnderLoad(run: ServerRun): Promise<ServerRunResult> {
  // A fresh database per run: every run starts from an empty book, so runs are independent
  // and a later run does not inherit the orders (and index growth) of the earlier ones.
  await createDatabase(run.database);
  const url = transportUrl(run.transport, run.database);
  const timestamp = new Date().toISOString();
  try {
    const server = await startServer(run.cpus, run.workers, run.writeQueue, url);
    progress(
      `${run.label} (cpu ${run.cpus.join(',')}, ${run.workers} worker(s)): server up on port ${server.port}; stressing ${run.load.warmup} + ${run.load.seconds} s`,
    );
    let outcome: StressOutcome;
    try {
      outcome = await runStressClient(run.load, server, url);
    } catch (error) {
      await server.stop();
      throw error;
    }
    const shutdown = await server.stop();
    const database = await databaseCounters(run.database);
    const failure = describeFailure(outcome, shutdown);
    if (failure) {
      progress(`${run.label}: FAILED: ${failure}`);
      process.stderr.write(
        `stress client stderr:\n${outcome.stderrTail}\nserver warnings/errors:\n${shutdown.problems.slice(0, 20).join('\n')}\n`,
      );
    } else
      progress(
        `${run.label}: ${outcome.result?.ordersPerSecond.toFixed(0)} orders/s, p99 ${outcome.result?.latencyMs.p99.toFixed(1)} ms`,
      );
    return { timestamp, outcome, shutdown, database, failure };
  } finally {
    await dropDatabase(run.database);
  }
}

function describeFailure(outcome: StressOutcome, shutdown: ServerShutdown): string | null {
  const problems: string[] = [];
  if (outcome.exitCode !== 0) problems.push(`stress client exited with ${outcome.exitCode}`);
  // The error kinds say why (connection refused, timeouts, server errors), so put the commonest in the reason.
  const errorKinds = Object.entries(outcome.result?.errors ?? {})
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3);
  if ((outcome.result?.failedRequests ?? 0) > 0)
    problems.push(
      `${outcome.result?.failedRequests} failed requests (${errorKinds.map(([kind, count]) => `${kind}: ${count}`).join('; ')})`,
    );
  if (!outcome.result) problems.push('no stress JSON');
  const violations = outcome.result?.invariants.violations ?? [];
  if (violations.length > 0) problems.push(`invariant violations: ${violations.slice(0, 5).join('; ')}`);
  if (shutdown.exitedEarly) problems.push(shutdown.exitedEarly);
  else if (shutdown.exitCode !== 0) problems.push(`server exited with ${shutdown.exitCode}`);
  // An error line (a worker that died and was replaced, say) fails the run even if the client coped.
  const errorLines = shutdown.problems.filter((line) => line.includes('"level":"error"'));
  if (errorLines.length > 0) problems.push(`server logged ${errorLines.length} error(s), first: ${errorLines[0]}`);
  else if (problems.length > 0 && shutdown.problems.length > 0) {
    problems.push(`server logged ${shutdown.problems.length} warning(s)/error(s), first: ${shutdown.problems[0]}`);
  }
  return problems.length > 0 ? problems.join('; ') : null;
}
