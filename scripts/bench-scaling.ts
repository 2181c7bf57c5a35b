/**
 * Scalability experiment (`npm run bench:scaling`): how orders/s grow with the
 * CPU cores given to the server, next to what PostgreSQL alone manages on the
 * same machine (pgbench), so the numbers say where the ceiling is.
 *
 * For k = 1..N cores and r = 1..R repeats it starts the server pinned to k
 * cores with WORKERS = k on a fresh database, drives it with the stress client
 * (dist/client/stress.js --json), stops it, and records the result. It writes
 * runs.csv, throughput.svg, latency.svg and report.md to docs/scaling/, prints a
 * summary on stdout (progress goes to stderr), and drops every database it
 * created, also on failure or Ctrl-C. Exits non-zero if any run failed.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { allowedCpus, formatCpuUse, type CpuUse } from './bench-support/cpu.js';
import type { DatabaseCounters } from './bench-support/databases.js';
import { runBenchmark } from './bench-support/lifecycle.js';
import { describeMachine, machineMarkdown, type Machine } from './bench-support/machine.js';
import { DEFAULT_STRESS_CLIENT, PROJECT_ROOT } from './bench-support/paths.js';
import { optionsOrExit, runOptions, RUN_FLAGS, UsageError, wholeNumber, type RunOptions } from './bench-support/options.js';
import { measurePgbench, pgbenchCommand, type PgbenchResult } from './bench-support/pgbench.js';
import { progress, setProgressLabel } from './bench-support/progress.js';
import { runServerUnderLoad } from './bench-support/run.js';
import { mean, plusMinus, spread, type Spread } from './bench-support/stats.js';
import type { StressResult } from './bench-support/stress.js';

const HELP = `Usage: npm run bench:scaling -- [options]

Runs the server on 1..N cores (taskset, WORKERS = cores), R times each, drives it with the stress
client, measures PostgreSQL's own ceiling with pgbench, and writes docs/scaling/{runs.csv,
throughput.svg, latency.svg, report.md}. Progress on stderr, summary on stdout.

  --repeats N        runs per core count (default 3)
  --seconds S        measured seconds per stress run and per pgbench run (default 10)
  --warmup W         stress warm-up seconds before measuring (default 2)
  --connections C    stress connections, and pgbench clients (default 8)
  --max-cores N      highest core count to try (default: all available, here ${os.availableParallelism()})
  --accounts A       accounts the stress client trades with (default 100)
  --symbols S        symbols the stress client trades (default 10)
  --quick            CI smoke: 1 repeat, 3 s, 1 s warm-up (explicit flags still win)
  --out DIR          output directory (default docs/scaling)
  --stress-client F  stress client script (default dist/client/stress.js)
  --help             this text

Environment: ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres); databases
are created and dropped on that server. PGBENCH: pgbench binary (default /usr/bin/pgbench).
Exit status: 0 if every run succeeded, 1 if a stress run failed or reported invariant violations.`;

// ---------------------------------------------------------------------------
// Options

type Options = RunOptions & {
  maxCores: number;
  accounts: number;
  symbols: number;
  outDir: string;
  stressClient: string;
};

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      ...RUN_FLAGS,
      'max-cores': { type: 'string' },
      accounts: { type: 'string' },
      symbols: { type: 'string' },
      out: { type: 'string' },
      'stress-client': { type: 'string' },
    },
  });
  if (values.help) return 'help';
  const available = allowedCpus().length;
  const maxCores = wholeNumber('max-cores', values['max-cores'], available, 1);
  if (maxCores > available) throw new UsageError(`--max-cores ${maxCores}: only ${available} cores are available to this process`);
  return {
    ...runOptions(values, { repeats: 3, connections: 8, minConnections: 1 }),
    maxCores,
    accounts: wholeNumber('accounts', values.accounts, 100, 1),
    symbols: wholeNumber('symbols', values.symbols, 10, 1),
    outDir: path.resolve(PROJECT_ROOT, values.out ?? 'docs/scaling'),
    stressClient: path.resolve(PROJECT_ROOT, values['stress-client'] ?? DEFAULT_STRESS_CLIENT),
  };
}

setProgressLabel('bench:scaling');

/** Weights of orders : queries : cancels, and the share of orders priced to cross the book. */
const WORKLOAD_MIX = '70:20:10';
const WORKLOAD_CROSS = 0.5;

// ---------------------------------------------------------------------------
// One run: fresh database, pinned server, stress, stop

type RunRecord = {
  timestamp: string;
  cores: number;
  workers: number;
  repeat: number;
  connections: number;
  seconds: number;
  warmup: number;
  stress: StressResult | null;
  cpu: CpuUse | null;
  serializationRetries: number;
  retriesExhausted: number;
  /** PostgreSQL's counters for the run's database over the whole run, or null if unavailable. */
  database: DatabaseCounters | null;
  /** Why the run counts as failed, or null. */
  failure: string | null;
};

async function runOnce(coreCount: number, repeat: number, options: Options): Promise<RunRecord> {
  const { timestamp, outcome, shutdown, database, failure } = await runServerUnderLoad({
    label: `cores ${coreCount}, repeat ${repeat}`,
    database: `scaling_${process.pid}_c${coreCount}_r${repeat}`,
    cpus: allowedCpus().slice(0, coreCount),
    workers: coreCount,
    load: {
      client: options.stressClient,
      connections: options.connections,
      seconds: options.seconds,
      warmup: options.warmup,
      workload: [
        '--accounts', String(options.accounts),
        '--symbols', String(options.symbols),
        // The seed depends on the repeat only, so every core count sees the same workloads.
        '--seed', String(repeat),
        // Passed explicitly (they are the client's defaults) so the report can state them.
        '--mix', WORKLOAD_MIX,
        '--cross', String(WORKLOAD_CROSS),
      ],
    },
  });
  return {
    timestamp,
    cores: coreCount,
    workers: coreCount,
    repeat,
    connections: options.connections,
    seconds: options.seconds,
    warmup: options.warmup,
    stress: outcome.result,
    cpu: outcome.cpu,
    serializationRetries: shutdown.serializationRetries,
    retriesExhausted: shutdown.retriesExhausted,
    database,
    failure,
  };
}

// ---------------------------------------------------------------------------
// Statistics


type CoreSummary = {
  cores: number;
  runs: number;
  failedRuns: number;
  /** Over the runs that passed; NaN when none did. */
  orders: Spread;
  requests: Spread;
  p50: Spread;
  p99: Spread;
  ratio: number;
  retriesPer100Orders: number;
  sessionsPer100Orders: number;
  /** PostgreSQL commits per 100 requests: below 100 means the server groups requests into shared transactions. */
  commitsPer100Requests: number;
  /** CPU milliseconds per request answered, in the server and in PostgreSQL. */
  serverCpuMsPerRequest: number;
  postgresCpuMsPerRequest: number;
  cpu: CpuUse | null;
};

type PassedRun = RunRecord & { stress: StressResult };

/**
 * A count taken over the whole run (set-up, warm-up, measured window, verification) per 100
 * orders, with the orders of warm-up plus window estimated from the measured rate.
 */
function per100Orders(runs: PassedRun[], count: (run: PassedRun) => number | null, unit: 'orders' | 'requests' = 'orders'): number {
  const counted = runs.filter((run) => count(run) !== null);
  const rate = (run: PassedRun): number => (unit === 'orders' ? run.stress.ordersPerSecond : run.stress.requestsPerSecond);
  const denominator = counted.reduce((sum, run) => sum + rate(run) * (run.warmup + run.seconds), 0);
  return denominator > 0 ? (100 * counted.reduce((sum, run) => sum + (count(run) ?? 0), 0)) / denominator : Number.NaN;
}

/** Mean CPU milliseconds per request over the runs with a CPU sample. */
function cpuMsPerRequest(runs: PassedRun[], cores: (cpu: CpuUse) => number): number {
  return mean(runs.flatMap((run) => (run.cpu && run.stress.requestsPerSecond > 0 ? [(1000 * cores(run.cpu)) / run.stress.requestsPerSecond] : [])));
}

function summarize(records: RunRecord[], pgbench: PgbenchResult): CoreSummary[] {
  const coreCounts = [...new Set(records.map((record) => record.cores))].sort((a, b) => a - b);
  return coreCounts.map((cores) => {
    const all = records.filter((record) => record.cores === cores);
    // A failed run's numbers (a crashed server, refused connections) would only distort the means.
    const passed = all.filter((record): record is PassedRun => record.stress !== null && record.failure === null);
    const pick = (get: (stress: StressResult) => number): Spread => spread(passed.map((record) => get(record.stress)));
    const orders = pick((stress) => stress.ordersPerSecond);
    const sampled = passed.map((record) => record.cpu).filter((cpu): cpu is CpuUse => cpu !== null);
    const cpu: CpuUse | null = sampled.length === 0 ? null : {
      server: mean(sampled.map((use) => use.server)),
      postgres: mean(sampled.map((use) => use.postgres)),
      client: mean(sampled.map((use) => use.client)),
      other: mean(sampled.map((use) => use.other)),
      machineBusyPercent: mean(sampled.map((use) => use.machineBusyPercent)),
    };
    return {
      cores,
      runs: all.length,
      failedRuns: all.length - passed.length,
      orders,
      requests: pick((stress) => stress.requestsPerSecond),
      p50: pick((stress) => stress.latencyMs.p50),
      p99: pick((stress) => stress.latencyMs.p99),
      ratio: orders.mean / pgbench.mean,
      retriesPer100Orders: per100Orders(passed, (run) => run.serializationRetries),
      sessionsPer100Orders: per100Orders(passed, (run) => run.database?.sessions ?? null),
      commitsPer100Requests: per100Orders(passed, (run) => run.database?.commits ?? null, 'requests'),
      serverCpuMsPerRequest: cpuMsPerRequest(passed, (cpu) => cpu.server),
      postgresCpuMsPerRequest: cpuMsPerRequest(passed, (cpu) => cpu.postgres),
      cpu,
    };
  });
}

// ---------------------------------------------------------------------------
// Outputs: CSV, charts, report, summary

const fixed = (value: number | undefined, digits: number): string => (value === undefined || Number.isNaN(value) ? '' : value.toFixed(digits));

function csvField(value: string | number): string {
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function writeCsv(file: string, records: RunRecord[], pgbench: PgbenchResult): void {
  const header = [
    'timestamp', 'cores', 'workers', 'repeat', 'connections', 'seconds', 'requests_per_s', 'orders_per_s',
    'p50_ms', 'p90_ms', 'p99_ms', 'p999_ms', 'max_ms', 'failed', 'pgbench_tps', 'ratio_to_pgbench',
    // Beyond the core columns: what explains the numbers, and whether the run passed.
    'serialization_retries', 'pg_sessions', 'pg_commits', 'pg_rollbacks', 'cpu_server_cores', 'cpu_postgres_cores', 'cpu_client_cores', 'cpu_other_cores', 'machine_busy_pct',
    'invariants_checked', 'run_failure',
  ];
  const rows = records.map((record) => {
    const stress = record.stress;
    return [
      record.timestamp, record.cores, record.workers, record.repeat, record.connections, record.seconds,
      fixed(stress?.requestsPerSecond, 1), fixed(stress?.ordersPerSecond, 1),
      fixed(stress?.latencyMs.p50, 3), fixed(stress?.latencyMs.p90, 3), fixed(stress?.latencyMs.p99, 3),
      fixed(stress?.latencyMs.p999, 3), fixed(stress?.latencyMs.max, 3), stress?.failedRequests ?? '',
      fixed(pgbench.mean, 1), stress ? fixed(stress.ordersPerSecond / pgbench.mean, 4) : '',
      record.serializationRetries, record.database?.sessions ?? '', record.database?.commits ?? '', record.database?.rollbacks ?? '', fixed(record.cpu?.server, 2), fixed(record.cpu?.postgres, 2), fixed(record.cpu?.client, 2),
      fixed(record.cpu?.other, 2), fixed(record.cpu?.machineBusyPercent, 1), stress?.invariants.checked ?? '', record.failure ?? '',
    ].map(csvField).join(',');
  });
  writeFileSync(file, `${[header.join(','), ...rows].join('\n')}\n`);
}

async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // renderer 'none': no canvas or DOM needed; text widths are estimated, which is fine for SVG.
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const coresAxis = {
  field: 'cores',
  type: 'ordinal' as const,
  title: 'cores for the server (taskset, WORKERS = cores)',
  axis: { labelAngle: 0 },
};

/** One layer of a layered chart, taken from vega-lite's own spec type. */
type LayerSpec = Extract<TopLevelSpec, { layer: unknown }>['layer'][number];
type Labelled = { cores: number; mean: number; label: string };
type ColorEncoding = { field: string; type: 'nominal'; title: string | null; scale: { domain: string[]; range: string[] } };

/**
 * Text layers printing each mean beside its point: left of the first core count and right of
 * the others, where the line between the points does not run through the text.
 */
function valueLabels<T extends Labelled>(labelled: T[], color: ColorEncoding): LayerSpec[] {
  const firstCores = Math.min(...labelled.map((item) => item.cores));
  const layer = (values: T[], align: 'left' | 'right'): LayerSpec => ({
    data: { values },
    mark: { type: 'text', align, dx: align === 'left' ? 13 : -13, dy: -9 },
    encoding: { x: coresAxis, y: { field: 'mean', type: 'quantitative' }, text: { field: 'label' }, color },
  });
  return [layer(labelled.filter((item) => item.cores === firstCores), 'right'), layer(labelled.filter((item) => item.cores !== firstCores), 'left')];
}

/** The mean of each series as a line with points, and its min–max range as error bars. */
function meanWithRange(bars: Array<{ cores: number; min: number; max: number; mean: number }>, yTitle: string, color: ColorEncoding): LayerSpec[] {
  return [
    {
      data: { values: bars },
      mark: { type: 'errorbar', ticks: { size: 14 }, thickness: 1.5 },
      encoding: { x: coresAxis, y: { field: 'min', type: 'quantitative', title: yTitle, scale: { zero: true } }, y2: { field: 'max' }, color },
    },
    {
      data: { values: bars },
      mark: { type: 'line', point: { size: 70, filled: true } },
      encoding: { x: coresAxis, y: { field: 'mean', type: 'quantitative', title: yTitle }, color },
    },
  ];
}

function throughputSpec(records: RunRecord[], summary: CoreSummary[], pgbench: PgbenchResult, options: Options, machine: Machine): TopLevelSpec {
  const ordersSeries = 'exchange server: orders/s';
  const requestsSeries = 'exchange server: requests/s (all kinds)';
  const pgbenchSeries = 'PostgreSQL alone: pgbench -N tps (band = min–max)';
  // requests/s is only worth a line when the workload sends more than orders.
  const showRequests = summary.some((row) => Math.abs(row.requests.mean - row.orders.mean) > 0.01 * row.orders.mean);
  const series = showRequests ? [ordersSeries, requestsSeries, pgbenchSeries] : [ordersSeries, pgbenchSeries];
  const bars = summary.filter((row) => !Number.isNaN(row.orders.mean)).flatMap((row) => [
    { cores: row.cores, series: ordersSeries, ...row.orders },
    ...(showRequests ? [{ cores: row.cores, series: requestsSeries, ...row.requests }] : []),
  ]);
  const runs = records.flatMap((record) => record.stress && record.failure === null ? [
    { cores: record.cores, series: ordersSeries, value: record.stress.ordersPerSecond },
    ...(showRequests ? [{ cores: record.cores, series: requestsSeries, value: record.stress.requestsPerSecond }] : []),
  ] : []);
  const color = {
    field: 'series',
    type: 'nominal' as const,
    title: null,
    scale: { domain: series, range: showRequests ? ['#1f77b4', '#2ca02c', '#d62728'] : ['#1f77b4', '#d62728'] },
    // symbolOpacity: the faint pgbench band would otherwise make every legend symbol faint.
    legend: { orient: 'bottom' as const, direction: 'vertical' as const, labelLimit: 600, symbolOpacity: 1 },
  };
  // Axis titles stay short: with no canvas vega over-estimates text length and would pad the chart.
  const yTitle = 'per second (orders, requests, tps)';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Throughput versus CPU cores given to the server',
      anchor: 'start',
      offset: 14,
      subtitle: [
        `mean of ${options.repeats} run(s), bars = min–max, dots = single runs`,
        `${options.connections} connections (pgbench: ${options.connections} clients), ${options.seconds} s measured per run`,
        `${machine.cores} cores shared with PostgreSQL and the load generator`,
      ],
    },
    width: 460,
    height: 300,
    layer: [
      {
        // The spread of the pgbench runs, as a band behind its mean.
        data: { values: [{ series: pgbenchSeries, low: Math.min(...pgbench.tps), high: Math.max(...pgbench.tps) }] },
        mark: { type: 'rect', opacity: 0.12 },
        encoding: { y: { field: 'low', type: 'quantitative', title: yTitle }, y2: { field: 'high' }, color },
      },
      {
        data: { values: [{ series: pgbenchSeries, tps: pgbench.mean }] },
        mark: { type: 'rule', strokeDash: [6, 4], strokeWidth: 2 },
        encoding: { y: { field: 'tps', type: 'quantitative', title: yTitle }, color },
      },
      {
        data: { values: [{ series: pgbenchSeries, tps: pgbench.mean, label: `pgbench ${pgbench.mean.toFixed(0)} tps` }] },
        mark: { type: 'text', align: 'left', baseline: 'top', dx: 4, dy: 6, x: 0 },
        encoding: { y: { field: 'tps', type: 'quantitative' }, text: { field: 'label' }, color },
      },
      ...meanWithRange(bars, yTitle, color),
      ...valueLabels(bars.map((bar) => ({ ...bar, label: bar.mean.toFixed(0) })), color),
      {
        data: { values: runs },
        mark: { type: 'point', size: 25, opacity: 0.6 },
        encoding: { x: coresAxis, y: { field: 'value', type: 'quantitative', title: yTitle }, color },
      },
    ],
  };
}

function latencySpec(records: RunRecord[], summary: CoreSummary[], options: Options): TopLevelSpec {
  const bars = summary.filter((row) => !Number.isNaN(row.p50.mean)).flatMap((row) => [
    { cores: row.cores, percentile: 'p50 (median)', ...row.p50 },
    { cores: row.cores, percentile: 'p99', ...row.p99 },
  ]);
  const runs = records.flatMap((record) => record.stress && record.failure === null ? [
    { cores: record.cores, percentile: 'p50 (median)', value: record.stress.latencyMs.p50 },
    { cores: record.cores, percentile: 'p99', value: record.stress.latencyMs.p99 },
  ] : []);
  const color = {
    field: 'percentile',
    type: 'nominal' as const,
    title: 'request latency',
    scale: { domain: ['p50 (median)', 'p99'], range: ['#1f77b4', '#ff7f0e'] },
    legend: { orient: 'bottom' as const },
  };
  const yTitle = 'latency per request (ms)';
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Request latency versus CPU cores given to the server',
      anchor: 'start',
      offset: 14,
      subtitle: [
        `mean of ${options.repeats} run(s), bars = min–max, dots = single runs`,
        `closed loop, ${options.connections} connections, as seen by the client`,
      ],
    },
    width: 460,
    height: 300,
    layer: [
      ...meanWithRange(bars, yTitle, color),
      ...valueLabels(bars.map((bar) => ({ ...bar, label: `${bar.mean.toFixed(1)} ms` })), color),
      {
        data: { values: runs },
        mark: { type: 'point', size: 25, opacity: 0.6 },
        encoding: { x: coresAxis, y: { field: 'value', type: 'quantitative', title: yTitle }, color },
      },
    ],
  };
}

/** The "what limits it" findings, worded from the measured numbers rather than written in advance. */
function limitsText(summary: CoreSummary[], pgbench: PgbenchResult, options: Options, machine: Machine): string {
  const rows = summary.filter((row) => !Number.isNaN(row.orders.mean));
  const first = rows[0];
  const last = rows.at(-1);
  if (!first || !last) return 'No run passed, so there is nothing to explain.';
  const findings: string[] = [];

  // First the caveat that colours everything else: how much of the machine other work took.
  const others = rows.flatMap((row) => (row.cpu ? [row.cpu.other] : []));
  if (others.length > 0 && Math.max(...others) >= 0.3) {
    findings.push(
      `**The machine was not quiet.** Processes outside the experiment took ${Math.min(...others).toFixed(2)}–${Math.max(...others).toFixed(2)} of the ${machine.cores} cores ` +
        'during the measured windows (the "other" column), so every figure here is lower and noisier than on an idle machine, pgbench included; ' +
        'the runs were interleaved so that this falls on all core counts alike. Rerun on a quiet machine for numbers to quote.',
    );
  }

  if (last.cores > first.cores) {
    const gain = last.orders.mean / first.orders.mean;
    const verdict = gain < 0.9
      ? 'so throughput fell when the server got more cores: each extra worker process (its event loop, its own pool of database connections) ' +
        'adds work on the cores PostgreSQL also needs, and whatever one process coordinates in memory is split across processes that can only coordinate through PostgreSQL'
      : gain < 1.1
      ? 'so more cores for the server buy almost nothing: the server process is not where the time goes'
      : gain > 0.85 * (last.cores / first.cores)
        ? 'close to linear, so at one core the server process itself was the limit'
        : 'less than linear: part of the limit is the server process, part is elsewhere';
    findings.push(`**Scaling.** Going from ${first.cores} to ${last.cores} core(s) took orders/s from ${first.orders.mean.toFixed(0)} to ${last.orders.mean.toFixed(0)} (×${gain.toFixed(2)}), ${verdict}.`);
  }

  for (const row of [first, last].filter((row, index, both) => row.cpu && both.indexOf(row) === index)) {
    if (!row.cpu) continue;
    const { server, postgres, client, other, machineBusyPercent } = row.cpu;
    let text = `**CPU at ${row.cores} core(s).** The machine was ${machineBusyPercent.toFixed(0)}% busy during the measured window: PostgreSQL used ${postgres.toFixed(2)} cores, ` +
      `the server ${server.toFixed(2)} (of ${row.cores} allowed), the stress client ${client.toFixed(2)}, everything else ${other.toFixed(2)}.`;
    if (server >= 0.85 * row.cores) text += ' The server uses all the CPU it is allowed, so at this setting it is CPU-bound on its own side (XML, matching calls, pg protocol).';
    if (machineBusyPercent >= 85) {
      text += ` All ${machine.cores} cores are busy and PostgreSQL is not restricted, so the server, PostgreSQL and the load generator compete for the same cores: ` +
        'a core given to the server is taken from PostgreSQL, and the numbers measure the machine as much as the server.';
    } else if (server < 0.85 * row.cores) {
      text += ' Neither the server\'s allowance nor the machine is saturated, so the time goes to waiting: on commits (the WAL flush), on round trips, ' +
        'and on whatever the server or PostgreSQL makes requests do one at a time.';
    }
    findings.push(text);
  }

  if (last.cores > first.cores && !Number.isNaN(first.serverCpuMsPerRequest) && !Number.isNaN(last.serverCpuMsPerRequest)) {
    const growth = (last.serverCpuMsPerRequest + last.postgresCpuMsPerRequest) / (first.serverCpuMsPerRequest + first.postgresCpuMsPerRequest);
    findings.push(
      `**Work per request.** The server spent ${first.serverCpuMsPerRequest.toFixed(2)} ms of CPU per request at ${first.cores} core(s) and ${last.serverCpuMsPerRequest.toFixed(2)} ms at ${last.cores}; ` +
        `PostgreSQL ${first.postgresCpuMsPerRequest.toFixed(2)} and ${last.postgresCpuMsPerRequest.toFixed(2)} ms. ` +
        (growth > 1.15
          ? `Each request costs ${(100 * (growth - 1)).toFixed(0)}% more CPU in total with more server processes, so they do not just share the work, they add to it.`
          : 'The cost per request hardly changes, so differences in throughput come from how much CPU and waiting each configuration gets, not from extra work.'),
    );
  }
  const commits = rows.map((row) => row.commitsPer100Requests);
  if (commits.every((value) => !Number.isNaN(value))) {
    const listed = rows.map((row) => `${row.commitsPer100Requests.toFixed(0)} at ${row.cores} core(s)`).join(', ');
    findings.push(
      Math.min(...commits) < 90
        ? `**Commits.** PostgreSQL committed fewer transactions than the server answered requests (per 100 requests: ${listed}): ` +
            'the server groups requests into shared transactions, so one WAL flush serves several of them.' +
            (last.cores > first.cores && last.commitsPer100Requests > 1.15 * first.commitsPer100Requests
              ? ` With ${last.cores} processes each commit carries fewer requests (${(100 / last.commitsPer100Requests).toFixed(1)} against ${(100 / first.commitsPer100Requests).toFixed(1)} at ${first.cores}): ` +
                'each process can only group its own requests, so more processes mean more, smaller transactions for the same load.'
              : '')
        : Math.min(...commits) <= 110
          ? `**Commits.** About one PostgreSQL commit per request (per 100 requests: ${listed}), so every write pays its own WAL flush.`
          : `**Commits.** More than one PostgreSQL commit per request (per 100 requests: ${listed}; set-up and the final invariant check are included, which matters more in short runs): ` +
            'some requests run several transactions (every statement outside an explicit transaction commits on its own), each a separate round trip and, for writes, a separate WAL flush.',
    );
  }

  const best = rows.reduce((top, row) => (row.ratio > top.ratio ? row : top));
  findings.push(
    `**Against PostgreSQL alone.** pgbench -N commits ${pgbench.mean.toFixed(0)} transactions/s with the same ${options.connections} clients (read committed, synchronous_commit=on); ` +
      `the server reaches ${(100 * best.ratio).toFixed(1)}% of that (at ${best.cores} core(s)). ` +
      'Both pay a WAL flush per committing write, but an order does more than a pgbench transaction (three updates and an insert): it checks and reserves ' +
      'funds or shares, matches against the book, updates both sides\' balances and positions and records executions, under SERIALIZABLE isolation; ' +
      'and the server adds XML parsing, rendering and a TCP round trip, on the same cores.',
  );

  const retries = last.retriesPer100Orders;
  const sessions = last.sessionsPer100Orders;
  if (!Number.isNaN(retries)) {
    findings.push(
      retries >= 5
        ? `**Serialization conflicts.** ${retries.toFixed(1)} retries per 100 orders at ${last.cores} core(s) (${first.retriesPer100Orders.toFixed(1)} at ${first.cores}): each retry redoes a whole transaction; ` +
            `with ${options.symbols} symbols and ${100 * WORKLOAD_CROSS}% crossing orders, concurrent orders often touch the same book and account rows.`
        : `**Serialization conflicts** are rare (${retries.toFixed(2)} retries per 100 orders at ${last.cores} core(s)), so contention on the book is not what limits throughput here.`,
    );
  }
  if (!Number.isNaN(sessions) && sessions >= 1) {
    const likeRetries = !Number.isNaN(retries) && retries > 0 && Math.abs(sessions - retries) / retries < 0.5;
    findings.push(
      `**Connection churn.** PostgreSQL saw ${sessions.toFixed(1)} new sessions per 100 orders at ${last.cores} core(s) (pg_stat_database.sessions), although the pool holds at most ${10 * last.cores}: ` +
        'pooled connections are being replaced during the run, each a backend fork plus session start-up on the same cores. ' +
        (likeRetries
          ? 'That is about one per serialization retry, which is what node-postgres\'s pool.query does: it discards the connection after any failed query, a 40001 included.'
          : 'node-postgres\'s pool.query discards the connection after any failed query, so failed statements are the first suspect.'),
    );
  }

  // Closed loop: C requests always in flight, so mean latency ≈ C / throughput (Little's law).
  const predicted = (1000 * options.connections) / last.requests.mean;
  findings.push(
    `**Latency** follows from throughput: the client keeps ${options.connections} requests in flight, so the mean is about ${options.connections} / ${last.requests.mean.toFixed(0)} requests/s ≈ ${predicted.toFixed(1)} ms ` +
      `(p50 measured: ${last.p50.mean.toFixed(1)} ms); at this load lower latency needs more throughput, not a faster single request.` +
      (retries > 0 ? ` The p99 tail (${last.p99.mean.toFixed(0)} ms) includes orders that were retried.` : ''),
  );
  return findings.map((finding) => `- ${finding}`).join('\n');
}

function writeReport(file: string, records: RunRecord[], summary: CoreSummary[], pgbench: PgbenchResult, options: Options, machine: Machine, startedAt: Date): void {
  const failed = records.filter((record) => record.failure !== null);
  const table = summary.map((row) => {
    const cpu = formatCpuUse(row.cpu);
    return `| ${row.cores} | ${row.runs}${row.failedRuns ? ` (${row.failedRuns} failed)` : ''} | ${plusMinus(row.orders, 0)} | ${plusMinus(row.requests, 0)} | ${plusMinus(row.p50, 2)} | ${plusMinus(row.p99, 2)} | ${Number.isNaN(row.ratio) ? 'n/a' : `${(100 * row.ratio).toFixed(1)}%`} | ${fixed(row.retriesPer100Orders, 2)} | ${fixed(row.sessionsPer100Orders, 2)} | ${fixed(row.commitsPer100Requests, 0)} | ${cpu} |`;
  });
  const lines = [
    '# Scalability experiment',
    '',
    `Generated by \`npm run bench:scaling${options.quick ? ' -- --quick' : ''}\` on ${startedAt.toISOString()}` +
      (options.quick ? ' (**quick smoke settings: one short repeat; not a measurement to quote**).' : '.'),
    '',
    '## Machine',
    '',
    ...machineMarkdown(machine),
    '',
    '## Method',
    '',
    `- For each core count k = 1..${options.maxCores}, ${options.repeats} run(s), interleaved (round r runs k = 1..${options.maxCores} once each, ` +
      'so disturbances of the machine fall on all core counts alike): the server is started as ' +
      '`taskset -c <first k allowed CPUs> node dist/server/main.js` with `WORKERS=k` (node:cluster workers inherit the CPU mask), ' +
      '`REPLY_FRAMING=length`, no Redis, on a **fresh database per run** (created before, dropped after), so every run starts from an empty book.',
    `- Load: \`node dist/client/stress.js --framing length --connections ${options.connections} --seconds ${options.seconds} --warmup ${options.warmup} ` +
      `--accounts ${options.accounts} --symbols ${options.symbols} --seed <repeat> --mix ${WORKLOAD_MIX} --cross ${WORKLOAD_CROSS} --json --database-url <run database>\`: ` +
      `orders, queries and cancels in the weights ${WORKLOAD_MIX}, ${100 * WORKLOAD_CROSS}% of orders priced to cross the book around a moving mid price; a closed loop ` +
      `(each connection sends its next request when the previous reply arrives), ${options.warmup} s warm-up then ${options.seconds} s measured; ` +
      'the seed depends only on the repeat, so each core count sees the same workloads. After each run the client checks the SPEC invariants in SQL; ' +
      'a run fails if the client exits non-zero or reports a violation. orders/s counts order requests answered in the window, business rejections ' +
      '(insufficient funds or shares) included; requests/s counts all three kinds.',
    `- Ceiling: PostgreSQL alone, \`pgbench -i -s 10\` into a scratch database, then ${options.repeats} × \`${pgbenchCommand(options.connections, options.seconds)}\` (with \`synchronous_commit=on\` like the server): ${pgbench.tps.map((tps) => tps.toFixed(0)).join(', ')} tps, ` +
      `mean **${pgbench.mean.toFixed(0)} tps**. pgbench -N runs read committed; the server runs SERIALIZABLE.`,
    `- **Only the server is restricted.** PostgreSQL, the stress client and pgbench run unrestricted on the same ${machine.cores} cores, ` +
      'so they compete with the server for CPU; the core count is the server\'s allowance, not the machine\'s size.',
    '- CPU use per party is read from /proc over (about) the measured window, in cores busy on average (1.00 = one core for the whole window): ' +
      'the server\'s process tree, every PostgreSQL process (it serves all databases on this server, not only the run\'s), the stress client, ' +
      'and "other" = the machine\'s busy time minus those three (kernel and unrelated jobs). The machine is not reserved for the experiment, so "other" shows how much it was disturbed.',
    '',
    '## Results',
    '',
    'Mean ± sample standard deviation over the runs (± 0 with a single run). Ratio = mean orders/s ÷ mean pgbench tps. ' +
      'Retries = serialization retries (SQLSTATE 40001/40P01) per 100 orders, from the server\'s shutdown log; sessions = PostgreSQL sessions opened to the run\'s database ' +
      '(pg_stat_database) per 100 orders; commits = transactions PostgreSQL committed in that database per 100 requests; ' +
      'all three are counted over the whole run and divided by the orders (requests) of warm-up plus window. ' +
      'CPU = cores used by server / PostgreSQL / stress client / everything else on the machine (machine busy %).',
    '',
    '| cores | runs | orders/s | requests/s | p50 ms | p99 ms | ratio to pgbench | retries /100 orders | sessions /100 orders | commits /100 requests | CPU server / PG / client / other |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...table,
    '',
    `pgbench -N: **${pgbench.mean.toFixed(0)} tps** (${options.connections} clients). Every run is a row in [runs.csv](runs.csv).`,
    '',
    failed.length === 0
      ? `All ${records.length} run(s) passed, with the invariants checked (${[...new Set(records.map((record) => record.stress?.invariants.checked ?? 'none'))].join(', ')}).`
      : `**${failed.length} run(s) failed:**\n\n${failed.map((record) => `- cores ${record.cores}, repeat ${record.repeat}: ${record.failure}`).join('\n')}`,
    '',
    '![Throughput versus cores](throughput.svg)',
    '',
    '![Latency versus cores](latency.svg)',
    '',
    '## What limits it',
    '',
    'Generated from the numbers above by the script; read it with the CPU and machine notes in mind.',
    '',
    limitsText(summary, pgbench, options, machine),
    '',
  ];
  writeFileSync(file, lines.join('\n'));
}

function printSummary(summary: CoreSummary[], pgbench: PgbenchResult, options: Options): void {
  const header = `${'cores'.padStart(5)} ${'runs'.padStart(4)} ${'orders/s'.padStart(16)} ${'requests/s'.padStart(16)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'vs pgbench'.padStart(10)}`;
  const lines = [
    '',
    `scaling: ${options.repeats} repeat(s) × ${options.seconds} s, ${options.connections} connections; pgbench -N: ${pgbench.mean.toFixed(0)} tps (${pgbench.tps.map((tps) => tps.toFixed(0)).join(', ')})`,
    header,
    ...summary.map((row) =>
      `${String(row.cores).padStart(5)} ${String(row.runs).padStart(4)} ${plusMinus(row.orders, 0).padStart(16)} ${plusMinus(row.requests, 0).padStart(16)} ` +
        `${row.p50.mean.toFixed(2).padStart(8)} ${row.p99.mean.toFixed(2).padStart(8)} ${`${(100 * row.ratio).toFixed(1)}%`.padStart(10)}` +
        (row.failedRuns ? `  (${row.failedRuns} failed)` : ''),
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

// ---------------------------------------------------------------------------
// Main: set-up, the runs, outputs, and cleanup whatever happens

async function main(): Promise<number> {
  const options = optionsOrExit(HELP, () => parseOptions(process.argv.slice(2)));
  if (typeof options === 'number') return options;
  if (!existsSync(options.stressClient)) {
    process.stderr.write(`stress client not found: ${options.stressClient} (build it, or pass --stress-client)\n`);
    return 2;
  }
  const startedAt = new Date();
  const machine = await describeMachine();
  progress(`${machine.cpuModel}, ${machine.cores} cores; ${machine.postgres.split(' on ')[0]}; Node ${machine.node}`);
  const pgbench = await measurePgbench(`scaling_pgbench_${process.pid}`, options);

  const records: RunRecord[] = [];
  // Repeats on the outside: each round runs every core count once, so a slow spell of the machine
  // (other work, a checkpoint) falls on all core counts alike rather than on one of them.
  for (let repeat = 1; repeat <= options.repeats; repeat++) {
    for (let cores = 1; cores <= options.maxCores; cores++) records.push(await runOnce(cores, repeat, options));
  }

  const summary = summarize(records, pgbench);
  mkdirSync(options.outDir, { recursive: true });
  writeCsv(path.join(options.outDir, 'runs.csv'), records, pgbench);
  writeFileSync(path.join(options.outDir, 'throughput.svg'), await renderSvg(throughputSpec(records, summary, pgbench, options, machine)));
  writeFileSync(path.join(options.outDir, 'latency.svg'), await renderSvg(latencySpec(records, summary, options)));
  writeReport(path.join(options.outDir, 'report.md'), records, summary, pgbench, options, machine, startedAt);
  progress(`wrote runs.csv, throughput.svg, latency.svg, report.md to ${path.relative(process.cwd(), options.outDir) || '.'}`);
  printSummary(summary, pgbench, options);

  const failures = records.filter((record) => record.failure !== null);
  if (failures.length > 0) process.stdout.write(`${failures.length} run(s) FAILED; see report.md\n`);
  return failures.length > 0 ? 1 : 0;
}

await runBenchmark(main);
