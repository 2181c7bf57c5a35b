/**
 * Figures from the records: each run's costs, each configuration's means over its repeats, and
 * pgbench's tps per client count. Numbers only; tables.ts and csv.ts print them.
 */
import type { CpuUse } from './cpu.js';
import { pgbenchCommand } from './pgbench.js';
import { configName, type Load, type Scenario } from './plan.js';
import type { PgbenchRecord, ServerRecord, Settings } from './runner.js';
import { finiteMean, mean, type Spread, spread } from './stats.js';
import type { StressResult } from './stress.js';

export type PgbenchFigures = { connections: number; command: string; tps: number[]; mean: number };

export function pgbenchFigures(records: PgbenchRecord[], settings: Settings): PgbenchFigures[] {
  const counts = [...new Set(records.map((record) => record.step.connections))];
  return counts.map((connections) => {
    const tps = records.filter((record) => record.step.connections === connections).map((record) => record.tps);
    return { connections, command: pgbenchCommand(connections, settings.seconds), tps, mean: mean(tps) };
  });
}

/** What one run cost. Counts over the whole run are divided by the orders (requests) of warm-up plus window. */
export type RunFigures = {
  retriesPer100Orders: number;
  sessionsPer100Orders: number;
  commitsPer100Requests: number;
  /** CPU per request in the measured window, µs: the server's process tree, PostgreSQL, the stress client. */
  serverUsPerRequest: number;
  postgresUsPerRequest: number;
  clientUsPerRequest: number;
  serverUsPerOrder: number;
  walBytesPerOrder: number;
  /**
   * The write lanes' time in transactions over warm-up plus window, summed over lanes (so
   * per-worker queues can pass 1); per batch, ms; and writes per batch. The lane is idle
   * before and after the load, so the whole run's totals stand for the loaded seconds.
   */
  writeLaneBusy: number;
  writeLaneMsPerBatch: number;
  writesPerBatch: number;
};

export function runFigures(record: ServerRecord, settings: Settings): RunFigures {
  const stress = record.stress;
  const wholeRun = (perSecond: number | undefined, count: number | undefined): number =>
    perSecond !== undefined && perSecond > 0 && count !== undefined
      ? (100 * count) / (perSecond * (settings.warmup + settings.seconds))
      : Number.NaN;
  const cpuPer = (cores: number | undefined, perSecond: number | undefined): number =>
    cores !== undefined && perSecond !== undefined && perSecond > 0 ? (1e6 * cores) / perSecond : Number.NaN;
  const windowOrders = stress ? stress.ordersPerSecond * settings.seconds : 0;
  return {
    retriesPer100Orders: wholeRun(stress?.ordersPerSecond, record.serializationRetries),
    sessionsPer100Orders: wholeRun(stress?.ordersPerSecond, record.database?.sessions),
    commitsPer100Requests: wholeRun(stress?.requestsPerSecond, record.database?.commits),
    serverUsPerRequest: cpuPer(record.cpu?.server, stress?.requestsPerSecond),
    postgresUsPerRequest: cpuPer(record.cpu?.postgres, stress?.requestsPerSecond),
    clientUsPerRequest: cpuPer(record.cpu?.client, stress?.requestsPerSecond),
    serverUsPerOrder: cpuPer(record.cpu?.server, stress?.ordersPerSecond),
    walBytesPerOrder: record.postgres && windowOrders > 0 ? record.postgres.walBytes / windowOrders : Number.NaN,
    ...laneFigures(record, settings),
  };
}

function laneFigures(
  record: ServerRecord,
  settings: Settings,
): Pick<RunFigures, 'writeLaneBusy' | 'writeLaneMsPerBatch' | 'writesPerBatch'> {
  // Records from before the lane was timed have none.
  const lane = record.writeLane as ServerRecord['writeLane'] | undefined;
  if (!lane || lane.batches === 0) {
    return { writeLaneBusy: Number.NaN, writeLaneMsPerBatch: Number.NaN, writesPerBatch: Number.NaN };
  }
  return {
    writeLaneBusy: lane.busySeconds / (settings.warmup + settings.seconds),
    writeLaneMsPerBatch: (1000 * lane.busySeconds) / lane.batches,
    writesPerBatch: lane.writes / lane.batches,
  };
}

/** One configuration (load, connections, CPUs, workers, write queue) over its repeats; means over the runs that passed. */
export type ConfigFigures = RunFigures & {
  name: string;
  load: Load;
  connections: number;
  cpus: number[];
  workers: number;
  /** As in the plan: set only for per-worker write queues, absent for the server's default. */
  writeQueue?: 'per-worker';
  scenarios: Scenario[];
  runs: number;
  passed: number;
  orders: Spread;
  requests: Spread;
  p50: Spread;
  p99: Spread;
  /** Mean orders/s over mean pgbench -N tps with as many clients. */
  ratioToPgbench: number;
  /** Mean cores used in the measured window. */
  cpu: CpuUse | null;
  /** Mean --rate, or null when unpaced. */
  rate: number | null;
};

export type Passed = ServerRecord & { stress: StressResult };

/** The runs that passed: a failed run's numbers (a crashed server, refused connections) would only distort. */
export const passedRuns = (records: ServerRecord[]): Passed[] =>
  records.filter((record): record is Passed => record.stress !== null && record.failure === null);

function meanCpu(uses: CpuUse[]): CpuUse | null {
  if (uses.length === 0) return null;
  const average = (get: (use: CpuUse) => number): number => mean(uses.map(get));
  return {
    server: average((use) => use.server),
    postgres: average((use) => use.postgres),
    client: average((use) => use.client),
    other: average((use) => use.other),
    machineBusyPercent: average((use) => use.machineBusyPercent),
  };
}

export function configFigures(records: ServerRecord[], pgbench: PgbenchFigures[], settings: Settings): ConfigFigures[] {
  const groups = new Map<string, ServerRecord[]>();
  for (const record of records) {
    const key = `${record.step.connections} ${configName(record.step)}`;
    groups.set(key, [...(groups.get(key) ?? []), record]);
  }
  return [...groups.values()].flatMap((all) => {
    const first = all[0];
    if (!first) return [];
    const passed = passedRuns(all);
    const pick = (get: (stress: StressResult) => number): Spread => spread(passed.map((record) => get(record.stress)));
    const costs = passed.map((record) => runFigures(record, settings));
    const cost = (get: (figures: RunFigures) => number): number => finiteMean(costs.map(get));
    const orders = pick((stress) => stress.ordersPerSecond);
    const rates = all.flatMap((record) => (record.rate === null ? [] : [record.rate]));
    const baseline = pgbench.find((figures) => figures.connections === first.step.connections)?.mean ?? Number.NaN;
    return [
      {
        name: configName(first.step),
        load: first.step.load,
        connections: first.step.connections,
        cpus: first.step.cpus,
        workers: first.step.workers,
        writeQueue: first.step.writeQueue,
        scenarios: first.step.scenarios,
        runs: all.length,
        passed: passed.length,
        orders,
        requests: pick((stress) => stress.requestsPerSecond),
        p50: pick((stress) => stress.latencyMs.p50),
        p99: pick((stress) => stress.latencyMs.p99),
        ratioToPgbench: orders.mean / baseline,
        retriesPer100Orders: cost((figures) => figures.retriesPer100Orders),
        sessionsPer100Orders: cost((figures) => figures.sessionsPer100Orders),
        commitsPer100Requests: cost((figures) => figures.commitsPer100Requests),
        serverUsPerRequest: cost((figures) => figures.serverUsPerRequest),
        postgresUsPerRequest: cost((figures) => figures.postgresUsPerRequest),
        clientUsPerRequest: cost((figures) => figures.clientUsPerRequest),
        serverUsPerOrder: cost((figures) => figures.serverUsPerOrder),
        walBytesPerOrder: cost((figures) => figures.walBytesPerOrder),
        writeLaneBusy: cost((figures) => figures.writeLaneBusy),
        writeLaneMsPerBatch: cost((figures) => figures.writeLaneMsPerBatch),
        writesPerBatch: cost((figures) => figures.writesPerBatch),
        cpu: meanCpu(passed.flatMap((record) => (record.cpu ? [record.cpu] : []))),
        rate: rates.length === 0 ? null : mean(rates),
      },
    ];
  });
}
