/**
 * The throughput benchmark (`npm run bench`): one command that measures, on this machine and
 * its PostgreSQL server, for each connection count C (default 8 and 32), pgbench -N with C
 * clients and then the exchange server under the stress client with C length-framed
 * connections, and prints every target figure next to its target, with what each request cost
 * (server, PostgreSQL and client CPU, WAL bytes, PostgreSQL's statements).
 *
 * Each round (--repeats) runs, each on a fresh database with its own server process:
 *   mixed      all allowed cores, default WORKERS: 10 symbols, mix 70:20:10, half the orders crossing
 *   cross20    all cores, default WORKERS: 20 symbols, orders only, every order crossing
 *   half-rate  the mixed workload paced (--rate) at half the requests/s that round's mixed run reached
 *   hot        all cores: one symbol, orders only, every order crossing
 *   1c/1w, 2c/1w, 2c/dw: the mixed workload on taskset -c <first allowed CPU> with WORKERS=1, and
 *              on the first two CPUs with WORKERS=1 and with the default WORKERS for two cores
 * Progress goes to stderr; the table (or, with --json, one JSON object) to stdout. Exit status 1
 * when any run failed: an invariant violation, a failed request, exhausted retries, a crash.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { allowedCpus, formatCpuUse, type CpuUse } from './bench-support/cpu.js';
import type { DatabaseCounters } from './bench-support/databases.js';
import { runBenchmark } from './bench-support/lifecycle.js';
import { describeMachine, machineLine, machineMarkdown, type Machine } from './bench-support/machine.js';
import { DEFAULT_STRESS_CLIENT, PROJECT_ROOT } from './bench-support/paths.js';
import { optionsOrExit, runOptions, RUN_FLAGS, type RunOptions } from './bench-support/options.js';
import { measurePgbench, pgbenchCommand, type PgbenchResult } from './bench-support/pgbench.js';
import { progress, setProgressLabel } from './bench-support/progress.js';
import type { PgWindow } from './bench-support/pg-costs.js';
import { runServerUnderLoad } from './bench-support/run.js';
import { defaultWorkers } from '../server/config.js';
import { mean, spread, type Spread } from './bench-support/stats.js';
import { stressArgs, type StressLoad, type StressResult } from './bench-support/stress.js';

const HELP = `Usage: npm run bench -- [options]

Measures the throughput targets in one go, on this machine and its PostgreSQL server, for each
connection count C: first pgbench -N with C clients, then the exchange server
(REPLY_FRAMING=length, no Redis, a fresh database per run, default WORKERS) under the stress
client with C connections, its invariants checked in SQL.

  1 mixed workload (10 symbols, mix 70:20:10, --cross 0.5) and crossing orders over 20 symbols
    (--symbols 20 --cross 1 --mix 1:0:0): durable orders/s against pgbench -N tps   target >= 1.5x
  2 one hot symbol, every order crossing (--symbols 1 --cross 1 --mix 1:0:0)       target >= 1.0x
  3 serialization retries per order (server's "stopped" log line)       target < 1%
    requests failed after retries (client failedRequests, server retriesExhausted)  target 0
  4 p99 latency of the mixed workload paced (--rate) at half the requests/s of 1   target < 10 ms
  5 server CPU (user+sys of its process tree, from /proc) per request, mixed       target < 40 µs
  6 mixed workload, server on 2 cores with the default WORKERS against taskset -c <cpu0> with
    WORKERS=1 (target >= 1.2x), and against 2 cores with WORKERS=1 (target: not below); and,
    for information, 2 cores with WORKERS=2 when that is not the default
Then, per run, what a request cost: CPU of the server, of PostgreSQL (its postmaster's process
tree) and of the stress client in µs per request, WAL bytes per order, and, where PostgreSQL
preloads pg_stat_statements, its statements by time per order.

Options:
  --connections C   stress connections and pgbench clients, or a list (default 8,32; at least 8)
  --seconds S       measured seconds per stress run and per pgbench run (default 10)
  --warmup W        stress warm-up seconds before measuring (default 2)
  --repeats N       rounds of every run; figures are means over them (default 1)
  --quick           smoke settings: 3 s runs, 1 s warm-up (explicit flags still win)
  --json            print one JSON object with every figure on stdout (the table then goes to stderr)
  --out FILE        also write a markdown report there (e.g. docs/bench/latest.md)
  --help            this text

Progress goes to stderr. Environment: ADMIN_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/postgres), where the scratch databases are created and dropped;
PGBENCH, the pgbench binary (default /usr/bin/pgbench).
Exit status: 0 when every run passed, whether or not the targets are met (they are figures, not
tests); 1 when a run failed (invariant violation, failed request, retries exhausted, crash); 2 on
bad usage.`;

setProgressLabel('bench');

// ---------------------------------------------------------------------------
// Options

type Options = RunOptions & { json: boolean; out: string | null; connectionCounts: number[] };

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { ...RUN_FLAGS, json: { type: 'boolean' }, out: { type: 'string' } },
  });
  if (values.help) return 'help';
  // The targets are for 8 or more connections; a list runs everything once per count.
  const counts = (values.connections ?? '8,32').split(',');
  const connectionCounts = counts.map((count) => runOptions({ connections: count }, { repeats: 1, connections: 8, minConnections: 8 }).connections);
  return {
    ...runOptions({ ...values, connections: counts[0] }, { repeats: 1, connections: 8, minConnections: 8 }),
    connectionCounts,
    json: values.json === true,
    out: values.out === undefined ? null : path.resolve(PROJECT_ROOT, values.out),
  };
}

// ---------------------------------------------------------------------------
// The runs

const MIXED = ['--accounts', '100', '--symbols', '10', '--mix', '70:20:10', '--cross', '0.5'];
const CROSS20 = ['--accounts', '100', '--symbols', '20', '--mix', '1:0:0', '--cross', '1'];
const HOT = ['--accounts', '100', '--symbols', '1', '--mix', '1:0:0', '--cross', '1'];

type Scenario = 'mixed' | 'cross20' | 'half-rate' | 'hot' | '1c/1w' | '2c/1w' | '2c/dw' | '2c/2w';

/** What each run is, for the progress lines and the report. */
const DESCRIPTIONS: Record<Scenario, string> = {
  mixed: 'mixed workload at full speed, all cores, default WORKERS',
  cross20: 'crossing orders over 20 symbols, all cores, default WORKERS',
  'half-rate': 'mixed workload paced at half the mixed peak, all cores',
  hot: 'one hot symbol, every order crossing, all cores',
  '1c/1w': 'mixed workload, 1 core, WORKERS=1',
  '2c/1w': 'mixed workload, 2 cores, WORKERS=1',
  '2c/dw': 'mixed workload, 2 cores, the default WORKERS for 2 cores',
  '2c/2w': 'mixed workload, 2 cores, WORKERS=2 (when that is not the default)',
};

type RunRecord = {
  scenario: Scenario;
  repeat: number;
  timestamp: string;
  cpus: number[];
  workers: number;
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
  database: DatabaseCounters | null;
  /** Serialization retries per 100 orders (whole run's retries over warm-up + window orders). */
  retriesPercent: number;
  /** Server CPU (its process tree, user + sys) per order and per request in the measured window, µs. */
  serverCpuUsPerOrder: number;
  serverCpuUsPerRequest: number;
  seconds: number;
  failure: string | null;
};

type Plan = { scenario: Scenario; cpus: number[]; workers: number; workload: string[] };

function plans(): { allCores: number[]; plans: Plan[]; coreComparison: boolean } {
  const allCores = allowedCpus();
  const workers = defaultWorkers(allCores.length);
  const list: Plan[] = [
    { scenario: 'mixed', cpus: allCores, workers, workload: MIXED },
    { scenario: 'cross20', cpus: allCores, workers, workload: CROSS20 },
    { scenario: 'half-rate', cpus: allCores, workers, workload: MIXED },
    { scenario: 'hot', cpus: allCores, workers, workload: HOT },
  ];
  const coreComparison = allCores.length >= 2;
  if (coreComparison) {
    const one = allCores.slice(0, 1);
    const two = allCores.slice(0, 2);
    list.push({ scenario: '1c/1w', cpus: one, workers: 1, workload: MIXED });
    // With exactly two cores the mixed run is already 2 cores with the default WORKERS...
    if (allCores.length !== 2) list.push({ scenario: '2c/dw', cpus: two, workers: defaultWorkers(2), workload: MIXED });
    // ...and 2 cores with one worker too, when that default is one.
    if (allCores.length !== 2 || defaultWorkers(2) !== 1) list.push({ scenario: '2c/1w', cpus: two, workers: 1, workload: MIXED });
    // For information: a worker per core, the default before.
    if (defaultWorkers(2) !== 2) list.push({ scenario: '2c/2w', cpus: two, workers: 2, workload: MIXED });
  }
  return { allCores, plans: list, coreComparison };
}

const databaseName = (scenario: Scenario, repeat: number, connections: number): string =>
  `bench_${process.pid}_c${connections}_${scenario.replace(/[^a-z0-9]/g, '')}_r${repeat}`;

async function runOnce(plan: Plan, repeat: number, rate: number | null, options: Options): Promise<RunRecord> {
  const load: StressLoad = {
    client: DEFAULT_STRESS_CLIENT,
    connections: options.connections,
    seconds: options.seconds,
    warmup: options.warmup,
    // The seed depends on the repeat only, so every configuration sees the same workload.
    workload: [...plan.workload, '--seed', String(repeat), ...(rate === null ? [] : ['--rate', String(rate)])],
  };
  const started = Date.now();
  const { timestamp, outcome, shutdown, database, failure } = await runServerUnderLoad({
    label: `${plan.scenario}, repeat ${repeat}/${options.repeats}${rate === null ? '' : ` at ${rate} requests/s`}`,
    database: databaseName(plan.scenario, repeat, options.connections),
    cpus: plan.cpus,
    workers: plan.workers,
    load,
  });
  progress(`${plan.scenario}, repeat ${repeat}: took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const stress = outcome.result;
  // Beyond what fails a scaling run: retries given up on, and invariants not checked in SQL.
  const problems = [failure];
  if (shutdown.retriesExhausted > 0) problems.push(`${shutdown.retriesExhausted} request(s) failed after exhausting serialization retries`);
  if (stress && stress.invariants.checked !== 'sql') problems.push(`invariants checked by ${stress.invariants.checked}, not SQL`);
  if (problems.length > 1) progress(`${plan.scenario}, repeat ${repeat}: FAILED: ${problems.slice(1).join('; ')}`);
  const ordersInRun = stress ? stress.ordersPerSecond * (options.warmup + options.seconds) : 0;
  const perUnit = (perSecond: number | undefined): number =>
    outcome.cpu && perSecond !== undefined && perSecond > 0 ? (1e6 * outcome.cpu.server) / perSecond : Number.NaN;
  return {
    scenario: plan.scenario,
    repeat,
    timestamp,
    cpus: plan.cpus,
    workers: plan.workers,
    rate,
    command: ['node', ...stressArgs(load, '<port>', '<fresh database>')].map((word) => path.isAbsolute(word) ? path.relative(PROJECT_ROOT, word) : word).join(' '),
    stress,
    cpu: outcome.cpu,
    postgres: outcome.postgres,
    serializationRetries: shutdown.serializationRetries,
    retriesExhausted: shutdown.retriesExhausted,
    database,
    retriesPercent: ordersInRun > 0 ? (100 * shutdown.serializationRetries) / ordersInRun : Number.NaN,
    serverCpuUsPerOrder: perUnit(stress?.ordersPerSecond),
    serverCpuUsPerRequest: perUnit(stress?.requestsPerSecond),
    seconds: options.seconds,
    failure: problems.filter((problem): problem is string => problem !== null).join('; ') || null,
  };
}

// ---------------------------------------------------------------------------
// Figures

type ScenarioFigures = {
  runs: number;
  passed: number;
  ordersPerSecond: Spread;
  requestsPerSecond: Spread;
  p50Ms: Spread;
  p99Ms: Spread;
  ratioToPgbench: number;
  retriesPercent: number;
  serverCpuUsPerOrder: number;
  serverCpuUsPerRequest: number;
  /** Mean cores used in the measured window by the server, PostgreSQL, the stress client and the rest. */
  cpuCores: CpuUse | null;
  /** Mean --rate of the runs, or null when unpaced. */
  rate: number | null;
};

function figuresOf(records: RunRecord[], scenario: Scenario, pgbench: PgbenchResult): ScenarioFigures | null {
  const all = records.filter((record) => record.scenario === scenario);
  if (all.length === 0) return null;
  const passed = all.filter((record): record is RunRecord & { stress: StressResult } => record.stress !== null && record.failure === null);
  const pick = (get: (stress: StressResult) => number): Spread => spread(passed.map((record) => get(record.stress)));
  const orders = pick((stress) => stress.ordersPerSecond);
  const finite = (values: number[]): number => mean(values.filter((value) => Number.isFinite(value)));
  const sampled = passed.flatMap((record) => (record.cpu ? [record.cpu] : []));
  const rates = all.flatMap((record) => (record.rate === null ? [] : [record.rate]));
  return {
    runs: all.length,
    passed: passed.length,
    ordersPerSecond: orders,
    requestsPerSecond: pick((stress) => stress.requestsPerSecond),
    p50Ms: pick((stress) => stress.latencyMs.p50),
    p99Ms: pick((stress) => stress.latencyMs.p99),
    ratioToPgbench: orders.mean / pgbench.mean,
    retriesPercent: finite(passed.map((record) => record.retriesPercent)),
    serverCpuUsPerOrder: finite(passed.map((record) => record.serverCpuUsPerOrder)),
    serverCpuUsPerRequest: finite(passed.map((record) => record.serverCpuUsPerRequest)),
    cpuCores: sampled.length === 0 ? null : {
      server: mean(sampled.map((use) => use.server)),
      postgres: mean(sampled.map((use) => use.postgres)),
      client: mean(sampled.map((use) => use.client)),
      other: mean(sampled.map((use) => use.other)),
      machineBusyPercent: mean(sampled.map((use) => use.machineBusyPercent)),
    },
    rate: rates.length === 0 ? null : mean(rates),
  };
}

type TargetRow = { target: string; measured: string; targetValue: string; met: boolean | null };

const number = (value: number, digits = 0): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
/** "1234" for one run, "1234 ± 56" over several. */
const figure = (value: Spread, digits = 0, repeats = 1): string =>
  repeats > 1 && Number.isFinite(value.sd) ? `${number(value.mean, digits)} ± ${number(value.sd, digits)}` : number(value.mean, digits);
/** met when the value is finite and passes; null (not measured) otherwise. */
const check = (value: number, passes: (value: number) => boolean): boolean | null => (Number.isFinite(value) ? passes(value) : null);

function targetRows(figures: Figures, pgbench: PgbenchResult, options: Options): TargetRow[] {
  const { mixed, cross20, hot, halfRate, cores } = figures;
  const r = options.repeats;
  const pg = `pgbench -N -c ${options.connections}: ${number(pgbench.mean)} tps`;
  const rows: TargetRow[] = [];
  if (mixed) {
    rows.push({
      target: `Mixed workload, ${options.connections} connections: orders/s vs pgbench -N`,
      measured: `${figure(mixed.ordersPerSecond, 0, r)} orders/s = ${number(mixed.ratioToPgbench, 2)}x (${pg})`,
      targetValue: '>= 1.5x',
      met: check(mixed.ratioToPgbench, (ratio) => ratio >= 1.5),
    });
  }
  if (cross20) {
    rows.push({
      target: `Crossing orders, 20 symbols, ${options.connections} connections: orders/s vs pgbench -N`,
      measured: `${figure(cross20.ordersPerSecond, 0, r)} orders/s = ${number(cross20.ratioToPgbench, 2)}x`,
      targetValue: '>= 1.5x',
      met: check(cross20.ratioToPgbench, (ratio) => ratio >= 1.5),
    });
  }
  if (hot) {
    rows.push({
      target: 'One hot symbol, every order crossing: orders/s vs pgbench -N',
      measured: `${figure(hot.ordersPerSecond, 0, r)} orders/s = ${number(hot.ratioToPgbench, 2)}x`,
      targetValue: '>= 1.0x',
      met: check(hot.ratioToPgbench, (ratio) => ratio >= 1.0),
    });
  }
  for (const [name, scenario] of [['mixed', mixed], ['hot symbol', hot]] as const) {
    if (!scenario) continue;
    rows.push({
      target: `Serialization retries, ${name}`,
      measured: `${number(scenario.retriesPercent, 2)}% of orders`,
      targetValue: '< 1%',
      met: check(scenario.retriesPercent, (percent) => percent < 1),
    });
  }
  rows.push({
    target: 'Requests failed after retries (all runs)',
    measured: `${figures.failedRequests} (client failed requests ${figures.clientFailedRequests}, server retries exhausted ${figures.retriesExhausted})`,
    targetValue: '0',
    met: figures.failedRequests === 0,
  });
  if (halfRate) {
    rows.push({
      target: 'p99 latency at half of peak (mixed)',
      measured: `${figure(halfRate.p99Ms, 2, r)} ms at ${number(halfRate.requestsPerSecond.mean)} requests/s (paced at ${number(halfRate.rate ?? Number.NaN)})`,
      targetValue: '< 10 ms',
      met: check(halfRate.p99Ms.mean, (p99) => p99 < 10),
    });
  }
  if (mixed) {
    rows.push({
      target: 'Server CPU per request, mixed',
      measured: `${number(mixed.serverCpuUsPerRequest)} µs (${number(mixed.serverCpuUsPerOrder)} µs per order)`,
      targetValue: '< 40 µs',
      met: check(mixed.serverCpuUsPerRequest, (us) => us < 40),
    });
  }
  if (hot) {
    rows.push({ target: 'Server CPU per order, hot symbol (for information)', measured: `${number(hot.serverCpuUsPerOrder)} µs`, targetValue: '-', met: null });
  }
  if (cores) {
    rows.push({
      target: `Mixed orders/s, 2 cores + default WORKERS (${cores.defaultWorkers}) vs 1 core + 1 worker`,
      measured: `${figure(cores.twoCoresDefault, 0, r)} vs ${figure(cores.oneCoreOneWorker, 0, r)} (x${number(cores.gain, 2)})`,
      targetValue: '>= 1.2x',
      met: check(cores.gain, (gain) => gain >= 1.2),
    });
    rows.push({
      target: `Mixed orders/s, 2 cores: default WORKERS (${cores.defaultWorkers}) vs WORKERS=1`,
      measured: cores.defaultWorkers === 1 ? 'the same run (the default is 1 worker)' : `${figure(cores.twoCoresDefault, 0, r)} vs ${figure(cores.twoCoresOneWorker, 0, r)} (x${number(cores.againstOneWorker, 2)})`,
      targetValue: '>= 1.0x',
      met: check(cores.againstOneWorker, (ratio) => ratio >= 1),
    });
    if (cores.defaultWorkers !== 2 && Number.isFinite(cores.twoCoresTwoWorkers.mean)) {
      rows.push({
        target: 'Mixed orders/s, 2 cores + 2 workers (for information)',
        measured: `${figure(cores.twoCoresTwoWorkers, 0, r)} (x${number(cores.twoCoresTwoWorkers.mean / cores.twoCoresOneWorker.mean, 2)} of 2 cores + 1 worker)`,
        targetValue: '-',
        met: null,
      });
    }
  } else {
    rows.push({ target: 'Mixed orders/s, 2 cores vs 1 core', measured: 'not measured: fewer than 2 CPUs available', targetValue: '>= 1.2x', met: null });
  }
  rows.push({
    target: 'Invariants (SQL) and run failures',
    measured: figures.failedRuns === 0 ? `all ${figures.runs} runs passed, invariants hold` : `${figures.failedRuns} of ${figures.runs} runs FAILED`,
    targetValue: 'no failure',
    met: figures.failedRuns === 0,
  });
  return rows;
}

type Figures = {
  mixed: ScenarioFigures | null;
  cross20: ScenarioFigures | null;
  halfRate: ScenarioFigures | null;
  hot: ScenarioFigures | null;
  cores: {
    oneCoreOneWorker: Spread; twoCoresOneWorker: Spread; twoCoresDefault: Spread; defaultWorkers: number; twoCoresTwoWorkers: Spread;
    /** 2 cores with the default WORKERS over 1 core with one; over 2 cores with one. */
    gain: number; againstOneWorker: number;
  } | null;
  /** Client failed requests plus server requests that exhausted their retries, over all runs. */
  failedRequests: number;
  clientFailedRequests: number;
  retriesExhausted: number;
  runs: number;
  failedRuns: number;
};

function computeFigures(records: RunRecord[], pgbench: PgbenchResult, coreComparison: boolean, allCores: number[]): Figures {
  const mixed = figuresOf(records, 'mixed', pgbench);
  const ordersOf = (scenario: Scenario): Spread => figuresOf(records, scenario, pgbench)?.ordersPerSecond ?? spread([]);
  let cores: Figures['cores'] = null;
  if (coreComparison) {
    // With exactly two allowed cores the mixed run is the 2-core run with the default WORKERS
    // (and the 2-core, 1-worker run when that default is one).
    const twoCoresDefault = allCores.length === 2 ? (mixed?.ordersPerSecond ?? spread([])) : ordersOf('2c/dw');
    const twoCoresOneWorker = allCores.length === 2 && defaultWorkers(2) === 1 ? twoCoresDefault : ordersOf('2c/1w');
    const oneCoreOneWorker = ordersOf('1c/1w');
    cores = {
      oneCoreOneWorker, twoCoresOneWorker, twoCoresDefault, defaultWorkers: defaultWorkers(2), twoCoresTwoWorkers: ordersOf('2c/2w'),
      gain: twoCoresDefault.mean / oneCoreOneWorker.mean, againstOneWorker: twoCoresDefault.mean / twoCoresOneWorker.mean,
    };
  }
  const clientFailedRequests = records.reduce((sum, record) => sum + (record.stress?.failedRequests ?? 0), 0);
  const retriesExhausted = records.reduce((sum, record) => sum + record.retriesExhausted, 0);
  return {
    mixed,
    cross20: figuresOf(records, 'cross20', pgbench),
    halfRate: figuresOf(records, 'half-rate', pgbench),
    hot: figuresOf(records, 'hot', pgbench),
    cores,
    // A request whose retries ran out is answered with an error the client counts as failed;
    // count the larger of the two so it is not counted twice.
    failedRequests: Math.max(clientFailedRequests, retriesExhausted),
    clientFailedRequests,
    retriesExhausted,
    runs: records.length,
    failedRuns: records.filter((record) => record.failure !== null).length,
  };
}

// ---------------------------------------------------------------------------
// Output: the table, JSON, the markdown report

const metText = (met: boolean | null): string => (met === null ? '-' : met ? 'yes' : 'NO');

function headline(machine: Machine, startedAt: Date, options: Options, pgbench: PgbenchResult): string[] {
  return [
    `Benchmark ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC on ${machineLine(machine)}`,
    `${options.connections} connections / pgbench clients, ${options.repeats} × ${options.seconds} s runs (+${options.warmup} s warm-up), ` +
      `pgbench -N ${pgbench.tps.map((tps) => tps.toFixed(0)).join(', ')} tps${options.quick ? ' (quick smoke settings: not figures to quote)' : ''}`,
  ];
}

/** A markdown table with aligned columns, so it reads in a terminal and pastes into a README. */
function markdownTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [line(header), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...rows.map(line)];
}

function targetTable(rows: TargetRow[]): string[] {
  return markdownTable(['target', 'measured', 'target value', 'met?'], rows.map((row) => [row.target, row.measured, row.targetValue, metText(row.met)]));
}

function runsTable(records: RunRecord[]): string[] {
  return markdownTable(
    ['run', 'repeat', 'cpus', 'workers', 'rate', 'orders/s', 'requests/s', 'p50 ms', 'p99 ms', 'retries % orders', 'server µs/order', 'CPU server / PG / client / other', 'failure'],
    records.map((record) => [
      record.scenario, String(record.repeat), record.cpus.join(','), String(record.workers), record.rate === null ? '-' : String(record.rate),
      number(record.stress?.ordersPerSecond ?? Number.NaN), number(record.stress?.requestsPerSecond ?? Number.NaN),
      number(record.stress?.latencyMs.p50 ?? Number.NaN, 2), number(record.stress?.latencyMs.p99 ?? Number.NaN, 2),
      number(record.retriesPercent, 2), number(record.serverCpuUsPerOrder), formatCpuUse(record.cpu), record.failure ?? '',
    ]),
  );
}

/** What a request cost in each run: CPU per request of server, PostgreSQL and client; WAL per order. */
function costTable(records: RunRecord[]): string[] {
  const perRequest = (cores: number | undefined, record: RunRecord): string =>
    number(cores !== undefined && record.stress ? (1e6 * cores) / record.stress.requestsPerSecond : Number.NaN);
  return markdownTable(
    ['run', 'repeat', 'workers', 'requests/s', 'server µs/request', 'PostgreSQL µs/request', 'client µs/request', 'other (cores)', 'WAL bytes/order'],
    records.map((record) => [
      record.scenario, String(record.repeat), String(record.workers), number(record.stress?.requestsPerSecond ?? Number.NaN),
      perRequest(record.cpu?.server, record), perRequest(record.cpu?.postgres, record), perRequest(record.cpu?.client, record),
      number(record.cpu?.other ?? Number.NaN, 2),
      number(record.postgres && record.stress ? record.postgres.walBytes / (record.stress.ordersPerSecond * record.seconds) : Number.NaN),
    ]),
  );
}

/** PostgreSQL's statements in one run (pg_stat_statements), by time per order; nested PL/pgSQL statements included. */
function statementTable(record: RunRecord | undefined): string[] {
  const statements = record?.postgres?.statements;
  if (!record?.stress || !statements) return ['(pg_stat_statements is not preloaded on this PostgreSQL server: no statement breakdown)'];
  const orders = record.stress.ordersPerSecond * record.seconds;
  return [
    `${record.scenario}, repeat ${record.repeat}: statements by execution + planning time per order (a statement run inside apply_writes is also inside its caller's time)`,
    '',
    ...markdownTable(['µs/order', 'of it planning', 'calls/order', 'statement'], statements.slice(0, 10).map((statement) => [
      number((1000 * (statement.execMs + statement.planMs)) / orders, 1), number((1000 * statement.planMs) / orders, 1),
      number(statement.calls / orders, 3), `\`${statement.query.slice(0, 110).replace(/`/g, "'")}\``,
    ])),
  ];
}

type Pass = { connections: number; pgbench: PgbenchResult; records: RunRecord[]; figures: Figures; rows: TargetRow[] };

function passLines(pass: Pass, machine: Machine, startedAt: Date, options: Options): string[] {
  const passOptions = { ...options, connections: pass.connections };
  return [
    ...headline(machine, startedAt, passOptions, pass.pgbench), '', ...targetTable(pass.rows), '',
    'What a request cost (CPU per request: the server\'s process tree, PostgreSQL\'s postmaster tree, the stress client):', '',
    ...costTable(pass.records), '',
    ...statementTable(pass.records.find((record) => record.scenario === 'mixed' && record.failure === null)),
  ];
}

function writeReport(file: string, context: { machine: Machine; startedAt: Date; options: Options; passes: Pass[]; argv: string[] }): void {
  const { machine, startedAt, options, passes } = context;
  const records = passes.flatMap((pass) => pass.records);
  const commands = [...new Map(records.map((record) => [record.scenario, record])).values()];
  const lines = [
    '# Benchmark: throughput targets',
    '',
    `Generated by \`npm run bench${context.argv.length > 0 ? ` -- ${context.argv.join(' ')}` : ''}\` on ${startedAt.toISOString()}` +
      (options.quick ? ' (**quick smoke settings: not a measurement to quote**).' : '.'),
    '',
    '## Machine',
    '',
    ...machineMarkdown(machine),
    '',
    ...passes.flatMap((pass) => [`## ${pass.connections} connections`, '', ...passLines(pass, machine, startedAt, options), '']),
    '## Method',
    '',
    ...passes.map((pass) => `- PostgreSQL's ceiling at ${pass.connections} clients: \`pgbench -i -s 10\` into a scratch database, then ${options.repeats} × ` +
      `\`${pgbenchCommand(pass.connections, options.seconds)}\` with \`synchronous_commit=on\`: ${pass.pgbench.tps.map((tps) => tps.toFixed(0)).join(', ')} tps, ` +
      `mean **${pass.pgbench.mean.toFixed(0)} tps**. pgbench -N runs read committed; the server runs SERIALIZABLE.`),
    `- Every run: a fresh database (created before, dropped after), the server started as \`taskset -c <cpus> node dist/server/main.js\` with ` +
      '`WORKERS=<workers>`, `REPLY_FRAMING=length` and no `REDIS_URL`; the stress client below; the SPEC invariants checked in SQL afterwards. ' +
      'A run fails on an invariant violation, a failed request, a request that exhausted its serialization retries, or a server error.',
    `- Rounds: ${options.repeats}; each runs ${commands.map((record) => `${record.scenario} (${DESCRIPTIONS[record.scenario]})`).join(', ')}, in that order; the seed is the round number (the command lines below show the last round's).`,
    ...(commands.some((record) => record.scenario === '1c/1w') && !commands.some((record) => record.scenario === '2c/dw')
      ? [`- With exactly two CPUs allowed, the mixed run is the 2 cores + default WORKERS (${defaultWorkers(2)}) run of the core comparison (it is not run twice).`]
      : []),
    '- Stress client command lines:',
    ...commands.map((record) => `  - ${record.scenario}: \`${record.command}\``),
    '- half-rate: `--rate` is half the requests/s the same round\'s mixed run reached; each connection paces its sends so the total stays at that rate, ' +
      'and latency is measured from when each request was due (a request sent late because an earlier reply was slow counts its wait).',
    '- Serialization retries: the server\'s count over the whole run (its "stopped" log line) divided by the orders of warm-up plus window ' +
      '(orders/s × their length); failed requests: the stress client\'s failedRequests plus the server\'s retriesExhausted.',
    '- CPU: user + sys ticks read from /proc over about the measured window, of the server\'s process tree (primary and workers), of the ' +
      'PostgreSQL server\'s postmaster and its children (every postgres process when the postmaster is not on this machine), and of the stress ' +
      'client; "other" is the rest of the machine in cores. WAL bytes: pg_current_wal_insert_lsn() at the start and end of the window.',
    '',
    ...passes.flatMap((pass) => [`## Runs, ${pass.connections} connections`, '', ...runsTable(pass.records), '']),
  ];
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, lines.join('\n'));
}

// ---------------------------------------------------------------------------
// Main

const minutes = (seconds: number): string => `${Math.floor(seconds / 60)}:${String(Math.round(seconds % 60)).padStart(2, '0')}`;

async function runPass(connections: number, options: Options, planned: Plan[], startedAt: Date, estimate: number): Promise<Omit<Pass, 'figures' | 'rows'>> {
  const passOptions = { ...options, connections };
  const pgbench = await measurePgbench(`bench_pgbench_${process.pid}`, passOptions);
  const records: RunRecord[] = [];
  for (let repeat = 1; repeat <= options.repeats; repeat++) {
    let mixedPeak: RunRecord | null = null;
    for (const plan of planned) {
      let rate: number | null = null;
      if (plan.scenario === 'half-rate') {
        const peak = mixedPeak?.failure === null ? mixedPeak.stress?.requestsPerSecond : undefined;
        if (peak === undefined || !(peak > 0)) {
          progress(`half-rate, repeat ${repeat}: skipped, the mixed run of this round failed`);
          continue;
        }
        rate = Math.max(1, Math.round(peak / 2));
      }
      const record = await runOnce(plan, repeat, rate, passOptions);
      if (plan.scenario === 'mixed') mixedPeak = record;
      records.push(record);
      progress(`elapsed ${minutes((Date.now() - startedAt.getTime()) / 1000)} of about ${minutes(estimate)}`);
    }
  }
  return { connections, pgbench, records };
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const options = optionsOrExit(HELP, () => parseOptions(argv));
  if (typeof options === 'number') return options;
  if (!existsSync(DEFAULT_STRESS_CLIENT)) {
    process.stderr.write(`stress client not found: ${DEFAULT_STRESS_CLIENT} (run npm run build)\n`);
    return 2;
  }
  const startedAt = new Date();
  const { allCores, plans: planned, coreComparison } = plans();
  // About 4 s per run beyond the load itself: database, server start and stop, invariant check.
  const estimate = options.connectionCounts.length * options.repeats * (options.seconds + 5 + planned.length * (options.warmup + options.seconds + 4));
  progress(`plan, for ${options.connectionCounts.join(' and ')} connections: pgbench -N ${options.repeats} × ${options.seconds} s, then ${options.repeats} round(s) of ${planned.length} server runs ` +
    `(${planned.map((plan) => plan.scenario).join(', ')}) of ${options.warmup} + ${options.seconds} s each; about ${minutes(estimate)} min in all`);
  const machine = await describeMachine();
  progress(machineLine(machine));

  const passes: Pass[] = [];
  for (const connections of options.connectionCounts) {
    const pass = await runPass(connections, options, planned, startedAt, estimate);
    const figures = computeFigures(pass.records, pass.pgbench, coreComparison, allCores);
    passes.push({ ...pass, figures, rows: targetRows(figures, pass.pgbench, { ...options, connections }) });
  }
  const failures = passes.flatMap((pass) => pass.records.filter((record) => record.failure !== null).map((record) => ({ ...record, connections: pass.connections })));
  const failedRequests = passes.reduce((sum, pass) => sum + pass.figures.failedRequests, 0);
  const exitCode = failures.length > 0 || failedRequests > 0 ? 1 : 0;
  const table = passes.flatMap((pass) => [...passLines(pass, machine, startedAt, options), '']);
  if (options.json) {
    process.stderr.write(`\n${table.join('\n')}\n`);
    process.stdout.write(`${JSON.stringify({
      date: startedAt.toISOString(),
      machine,
      options,
      passes: passes.map((pass) => ({
        connections: pass.connections,
        pgbench: { command: pgbenchCommand(pass.connections, options.seconds), ...pass.pgbench },
        figures: pass.figures,
        targets: pass.rows,
        runs: pass.records,
      })),
      exitCode,
    })}\n`);
  } else {
    process.stdout.write(`\n${table.join('\n')}\n`);
    if (failures.length > 0) {
      process.stdout.write(`\n${failures.length} run(s) FAILED:\n${failures.map((record) => `- ${record.scenario}, ${record.connections} connections, repeat ${record.repeat}: ${record.failure}`).join('\n')}\n`);
    }
  }
  if (options.out) {
    writeReport(options.out, { machine, startedAt, options, passes, argv });
    const relative = path.relative(process.cwd(), options.out);
    progress(`wrote ${relative.startsWith('..') ? options.out : relative}`);
  }
  return exitCode;
}

await runBenchmark(main);
