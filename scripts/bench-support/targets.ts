/**
 * The throughput targets at one connection count: each target's measured figure beside its
 * target value, and whether it is met (null: for information, or not measured).
 */
import { defaultWorkers } from '../../server/config.js';
import type { ConfigFigures, PgbenchFigures } from './figures.js';
import type { Load } from './plan.js';
import type { ServerRecord } from './runner.js';
import { fixed, meanAndSd } from './stats.js';

export type TargetRow = { target: string; measured: string; targetValue: string; met: boolean | null };

/** met when the value is finite and passes; null (not measured) otherwise. */
const check = (value: number, passes: (value: number) => boolean): boolean | null =>
  Number.isFinite(value) ? passes(value) : null;

/** Requests failed after retries: a request whose retries ran out is answered with an error the
 * client counts as failed, so the larger of the two counts, not their sum. */
export function failedRequests(records: ServerRecord[]): { total: number; client: number; exhausted: number } {
  const client = records.reduce((sum, record) => sum + (record.stress?.failedRequests ?? 0), 0);
  const exhausted = records.reduce((sum, record) => sum + record.retriesExhausted, 0);
  return { total: Math.max(client, exhausted), client, exhausted };
}

/**
 * The configuration of a load on `cores` cores with `workers` workers and the write queue named,
 * or, without one, the server's default queue: a per-worker run never stands in for a default one.
 */
type Find = (load: Load, cores: number, workers: number, writeQueue?: 'per-worker') => ConfigFigures | undefined;

/**
 * configs, pgbench and records are those of `connections`; allowedCores is how many CPUs the
 * benchmark may use (the "all cores" runs use them all with the default WORKERS).
 */
export function targetRows(
  connections: number,
  configs: ConfigFigures[],
  pgbench: PgbenchFigures | undefined,
  records: ServerRecord[],
  allowedCores: number,
): TargetRow[] {
  const find: Find = (load, cores, workers, writeQueue) =>
    configs.find(
      (config) =>
        config.load === load &&
        config.cpus.length === cores &&
        config.workers === workers &&
        config.writeQueue === writeQueue,
    );
  const atFull = (load: Load): ConfigFigures | undefined => find(load, allowedCores, defaultWorkers(allowedCores));
  const mixed = atFull('mixed');
  const cross20 = atFull('cross20');
  const hot = atFull('hot');
  const halfRate = atFull('half-rate');
  const rows: TargetRow[] = [];
  const vsPgbench = (config: ConfigFigures): string =>
    `${meanAndSd(config.orders)} orders/s = ${fixed(config.ratioToPgbench, 2)}x`;
  if (mixed) {
    rows.push({
      target: `Mixed workload, ${connections} connections: orders/s vs pgbench -N`,
      measured: `${vsPgbench(mixed)} (pgbench -N -c ${connections}: ${fixed(pgbench?.mean ?? Number.NaN)} tps)`,
      targetValue: '>= 1.5x',
      met: check(mixed.ratioToPgbench, (ratio) => ratio >= 1.5),
    });
  }
  if (cross20) {
    rows.push({
      target: `Crossing orders, 20 symbols, ${connections} connections: orders/s vs pgbench -N`,
      measured: vsPgbench(cross20),
      targetValue: '>= 1.5x',
      met: check(cross20.ratioToPgbench, (ratio) => ratio >= 1.5),
    });
  }
  if (hot) {
    rows.push({
      target: 'One hot symbol, every order crossing: orders/s vs pgbench -N',
      measured: vsPgbench(hot),
      targetValue: '>= 1.0x',
      met: check(hot.ratioToPgbench, (ratio) => ratio >= 1.0),
    });
  }
  for (const [name, config] of [
    ['mixed', mixed],
    ['hot symbol', hot],
  ] as const) {
    if (!config) continue;
    rows.push({
      target: `Serialization retries, ${name}`,
      measured: `${fixed(config.retriesPer100Orders, 2)}% of orders`,
      targetValue: '< 1%',
      met: check(config.retriesPer100Orders, (percent) => percent < 1),
    });
  }
  const failed = failedRequests(records);
  rows.push({
    target: 'Requests failed after retries (all runs)',
    measured: `${failed.total} (client failed requests ${failed.client}, server retries exhausted ${failed.exhausted})`,
    targetValue: '0',
    met: failed.total === 0,
  });
  if (halfRate) {
    rows.push({
      target: 'p99 latency at half of peak (mixed)',
      measured: `${meanAndSd(halfRate.p99, 2)} ms at ${fixed(halfRate.requests.mean)} requests/s (paced at ${fixed(halfRate.rate ?? Number.NaN)})`,
      targetValue: '< 10 ms',
      met: check(halfRate.p99.mean, (p99) => p99 < 10),
    });
  }
  if (mixed) {
    rows.push({
      target: 'Server CPU per request, mixed',
      measured: `${fixed(mixed.serverUsPerRequest)} µs (${fixed(mixed.serverUsPerOrder)} µs per order)`,
      targetValue: '< 40 µs',
      met: check(mixed.serverUsPerRequest, (us) => us < 40),
    });
  }
  if (hot) {
    rows.push({
      target: 'Server CPU per order, hot symbol (for information)',
      measured: `${fixed(hot.serverUsPerOrder)} µs`,
      targetValue: '-',
      met: null,
    });
  }
  rows.push(...workerRows(find, allowedCores));
  const failedRuns = records.filter((record) => record.failure !== null).length;
  rows.push({
    target: 'Invariants (SQL) and run failures',
    measured:
      failedRuns === 0
        ? `all ${records.length} runs passed, invariants hold`
        : `${failedRuns} of ${records.length} runs FAILED`,
    targetValue: 'no failure',
    met: failedRuns === 0,
  });
  return rows;
}

/**
 * The workers scenario: 2 cores with the default WORKERS against 1 core, and against WORKERS=1;
 * for information, 2 workers, and 2 workers with per-worker write queues against the shared one.
 */
function workerRows(find: Find, allowedCores: number): TargetRow[] {
  const defaultForTwo = defaultWorkers(2);
  const oneCore = find('mixed', 1, 1);
  const twoDefault = find('mixed', 2, defaultForTwo);
  const twoOne = find('mixed', 2, 1);
  const twoTwo = find('mixed', 2, 2);
  const twoPerWorker = find('mixed', 2, 2, 'per-worker');
  if (allowedCores < 2) {
    return [
      {
        target: 'Mixed orders/s, 2 cores vs 1 core',
        measured: 'not measured: fewer than 2 CPUs available',
        targetValue: '>= 1.2x',
        met: null,
      },
    ];
  }
  const rows: TargetRow[] = [];
  if (oneCore && twoDefault) {
    const gain = twoDefault.orders.mean / oneCore.orders.mean;
    rows.push({
      target: `Mixed orders/s, 2 cores + default WORKERS (${defaultForTwo}) vs 1 core + 1 worker`,
      measured: `${meanAndSd(twoDefault.orders)} vs ${meanAndSd(oneCore.orders)} (x${fixed(gain, 2)})`,
      targetValue: '>= 1.2x',
      met: check(gain, (ratio) => ratio >= 1.2),
    });
  }
  if (twoDefault && twoOne) {
    const ratio = twoDefault.orders.mean / twoOne.orders.mean;
    rows.push({
      target: `Mixed orders/s, 2 cores: default WORKERS (${defaultForTwo}) vs WORKERS=1`,
      measured:
        defaultForTwo === 1
          ? 'the same run (the default is 1 worker)'
          : `${meanAndSd(twoDefault.orders)} vs ${meanAndSd(twoOne.orders)} (x${fixed(ratio, 2)})`,
      targetValue: '>= 1.0x',
      met: check(ratio, (value) => value >= 1),
    });
  }
  if (defaultForTwo !== 2 && twoTwo && twoOne) {
    rows.push({
      target: 'Mixed orders/s, 2 cores + 2 workers (for information)',
      measured: `${meanAndSd(twoTwo.orders)} (x${fixed(twoTwo.orders.mean / twoOne.orders.mean, 2)} of 2 cores + 1 worker)`,
      targetValue: '-',
      met: null,
    });
  }
  if (twoPerWorker && twoTwo) {
    rows.push({
      target: 'Mixed orders/s, 2 cores + 2 workers, per-worker write queues (for information)',
      measured: `${meanAndSd(twoPerWorker.orders)} (x${fixed(twoPerWorker.orders.mean / twoTwo.orders.mean, 2)} of 2 cores + 2 workers, shared)`,
      targetValue: '-',
      met: null,
    });
  }
  return rows;
}
