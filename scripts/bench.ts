/**
 * The benchmark (`npm run bench`): builds a plan of runs from the options, prints it, runs it,
 * and prints the figures as tables (or JSON); with --out-dir it also writes them, every run in
 * runs.csv, and the charts of the cores sweep. The parts live in bench-support/: plan, runner,
 * figures, targets, tables, csv, charts.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeSweepCharts } from './bench-support/charts.js';
import { allowedCpus } from './bench-support/cpu.js';
import { writeRunsCsv } from './bench-support/csv.js';
import { type ConfigFigures, configFigures, type PgbenchFigures, pgbenchFigures } from './bench-support/figures.js';
import { runBenchmark } from './bench-support/lifecycle.js';
import { describeMachine, type Machine } from './bench-support/machine.js';
import { type BenchOptions, optionsOrExit, parseBenchOptions } from './bench-support/options.js';
import { DEFAULT_STRESS_CLIENT } from './bench-support/paths.js';
import { buildPlan, configName, type Step } from './bench-support/plan.js';
import { progress, setProgressLabel } from './bench-support/progress.js';
import { type Results, runPlan, type ServerRecord, type Settings } from './bench-support/runner.js';
import {
  configurationsTable,
  costTable,
  machineTable,
  pgbenchTable,
  planTable,
  type RunFacts,
  statementsTable,
  targetsTable,
} from './bench-support/tables.js';
import { failedRequests, type TargetRow, targetRows } from './bench-support/targets.js';
import { describeTransport, pgTransport, transportProblem } from './bench-support/transport.js';

const HELP = `Usage: npm run bench -- [options]

Builds a plan of runs, prints it (stderr), and runs it on this machine and its PostgreSQL
server. For each connection count C: pgbench -N with C clients, PostgreSQL's own ceiling; then
rounds of server runs, each the exchange server (REPLY_FRAMING=length, no Redis) on a fresh
database under the stress client with C connections, its invariants checked in SQL.

Scenarios, the parts of the plan (a run that two of them need is made once):
  mixed      10 symbols, mix 70:20:10, half the orders crossing; all cores, default WORKERS
  cross20    20 symbols, orders only, every order crossing; all cores, default WORKERS
  half-rate  mixed, paced (--rate) at half the requests/s of the round's mixed run (runs mixed too)
  hot        one symbol, orders only, every order crossing; all cores, default WORKERS
  workers    mixed on the first CPU with WORKERS=1; on the first two with WORKERS=1, 2 and the
             default for two cores; and on the first two with WORKERS=2 and WRITE_QUEUE=per-worker
             (named "per-worker"; every other run gets WRITE_QUEUE=shared)
  cores      mixed on the first k CPUs with WORKERS=k, for each k of --cores (the scaling sweep)

Printed per connection count: the targets (mixed and cross20 >= 1.5x pgbench -N; hot >= 1.0x;
retries < 1% of orders; no failed request; p99 < 10 ms at half rate; server CPU < 40 µs per
request; 2 cores with the default WORKERS >= 1.2x one core and not below WORKERS=1), each
configuration's figures, what a request cost, and PostgreSQL's statements where the server
preloads pg_stat_statements. What the figures mean: docs/performance.md.

Options:
  --scenarios LIST    scenarios to run (default: all of mixed,cross20,half-rate,hot,workers,cores)
  --connections LIST  stress connections and pgbench clients (default 8,32)
  --cores LIST        core counts of the cores scenario (default 1..N, every allowed CPU)
  --repeats N         rounds of every run; figures are means over them (default 1)
  --seconds S         measured seconds per stress run and per pgbench run (default 10)
  --warmup W          stress warm-up seconds before measuring (default 2)
  --quick             smoke settings: 3 s runs, 1 s warm-up (explicit flags still win)
  --plan, --dry-run   print the plan on stdout and exit without running it
  --json              print one JSON object with every figure on stdout (the tables go to stderr)
  --out-dir DIR       also write there results.md (the tables), runs.csv (every run) and, for the
                      cores scenario, throughput-C-connections.svg and latency-C-connections.svg
  --pg-socket DIR     the server and pgbench both reach PostgreSQL through its Unix-domain socket
                      in DIR (e.g. /var/run/postgresql), not over TCP (default: TCP to the host
                      and port of ADMIN_DATABASE_URL); the reports name the transport used
  --help              this text

Examples:
  npm run bench -- --out-dir docs/bench                            everything, into docs/bench
  npm run bench -- --scenarios cores --connections 8 --repeats 3   the scaling sweep alone
  npm run bench -- --scenarios mixed,hot --connections 32 --plan   what that would run
  npm run bench -- --pg-socket /var/run/postgresql                 everything, over the socket

Progress (run k of n, elapsed, time left) goes to stderr. Environment: ADMIN_DATABASE_URL
(default postgres://postgres@127.0.0.1:5432/postgres), where the scratch databases are created
and dropped, through this URL also with --pg-socket (whose socket is the one of its port);
PGBENCH, the pgbench binary (default /usr/bin/pgbench).
Exit status: 0 when every run passed, whether or not the targets are met (they are figures, not
tests); 1 when a run failed (invariant violation, failed request, retries exhausted, crash); 2 on
bad usage.`;

setProgressLabel('bench');

/** One connection count's figures. */
type Section = {
  connections: number;
  pgbench: PgbenchFigures | undefined;
  configs: ConfigFigures[];
  records: ServerRecord[];
  targets: TargetRow[];
};

function sections(results: Results, options: BenchOptions, settings: Settings, allowedCores: number): Section[] {
  const pgbench = pgbenchFigures(results.pgbench, settings);
  const configs = configFigures(results.servers, pgbench, settings);
  return options.connections.map((connections) => {
    const atCount = configs.filter((config) => config.connections === connections);
    const records = results.servers.filter((record) => record.step.connections === connections);
    const baseline = pgbench.find((figures) => figures.connections === connections);
    return {
      connections,
      pgbench: baseline,
      configs: atCount,
      records,
      targets: targetRows(connections, atCount, baseline, records, allowedCores),
    };
  });
}

/** The run whose statements are shown: the first passing mixed run on all cores, shared write queue, that has them. */
function statementsRun(section: Section, allowedCores: number): ServerRecord | undefined {
  const mixed = section.configs.find(
    (config) => config.load === 'mixed' && config.cpus.length === allowedCores && config.writeQueue === undefined,
  );
  return section.records.find(
    (record) =>
      mixed !== undefined &&
      configName(record.step) === mixed.name &&
      record.failure === null &&
      (record.postgres?.statements?.length ?? 0) > 0,
  );
}

/** The tables as one markdown document; chart file names per connection count when they were written. */
function resultsDocument(
  machine: Machine,
  facts: RunFacts,
  all: Section[],
  allowedCores: number,
  charts: Map<number, string[]>,
): string[] {
  const lines = ['# Benchmark results', '', ...machineTable(machine, facts), ''];
  for (const section of all) {
    lines.push(`## ${section.connections} connections`, '');
    if (section.pgbench) lines.push('### pgbench -N', '', ...pgbenchTable(section.pgbench), '');
    lines.push('### Targets', '', ...targetsTable(section.targets), '');
    if (section.configs.length > 0) {
      lines.push('### Configurations', '', ...configurationsTable(section.configs), '');
      lines.push('### Cost per request', '', ...costTable(section.configs), '');
    }
    const statements = statementsRun(section, allowedCores);
    if (statements) {
      lines.push(`### PostgreSQL statements: ${configName(statements.step)}, repeat ${statements.step.repeat}`, '');
      lines.push(...statementsTable(statements, facts.settings.seconds), '');
    }
    const files = charts.get(section.connections) ?? [];
    if (files.length > 0) lines.push('### Cores', '', ...files.flatMap((file) => [`![${file}](${file})`, '']));
  }
  return lines;
}

async function writeOutputs(
  dir: string,
  results: Results,
  all: Section[],
  settings: Settings,
  machine: Machine,
): Promise<Map<number, string[]>> {
  mkdirSync(dir, { recursive: true });
  writeRunsCsv(path.join(dir, 'runs.csv'), results, pgbenchFigures(results.pgbench, settings), settings);
  const charts = new Map<number, string[]>();
  for (const section of all) {
    const configs = section.configs
      .filter((config) => config.scenarios.includes('cores'))
      .sort((a, b) => a.cpus.length - b.cpus.length);
    if (configs.length === 0 || !section.pgbench) continue;
    const names = new Set(configs.map((config) => config.name));
    charts.set(
      section.connections,
      await writeSweepCharts(dir, {
        connections: section.connections,
        configs,
        records: section.records.filter((record) => names.has(configName(record.step))),
        pgbench: section.pgbench,
        settings,
        machineCores: machine.cores,
      }),
    );
  }
  return charts;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const cpus = allowedCpus();
  const options = optionsOrExit(HELP, () => parseBenchOptions(argv, cpus.length));
  if (typeof options === 'number') return options;
  const settings: Settings = {
    seconds: options.seconds,
    warmup: options.warmup,
    repeats: options.repeats,
    transport: pgTransport(options.pgSocket),
  };
  const plan: Step[] = buildPlan({ ...options, allowedCpus: cpus });
  const planLines = planTable(plan, settings);
  if (options.dryRun) {
    process.stdout.write(`${planLines.join('\n')}\n`);
    return 0;
  }
  process.stderr.write(`${planLines.join('\n')}\n\n`);
  if (!existsSync(DEFAULT_STRESS_CLIENT)) {
    process.stderr.write(`stress client not found: ${DEFAULT_STRESS_CLIENT} (run npm run build)\n`);
    return 2;
  }
  const transportError = transportProblem(settings.transport);
  if (transportError) {
    process.stderr.write(`${transportError}\n`);
    return 2;
  }
  const date = new Date();
  const machine = await describeMachine();
  const results = await runPlan(plan, settings);

  const all = sections(results, options, settings, cpus.length);
  const facts: RunFacts = {
    date,
    command: `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
    settings,
    quick: options.quick,
  };
  if (!all.some((section) => statementsRun(section, cpus.length))) {
    progress(
      'no statement breakdown: PostgreSQL does not preload pg_stat_statements, or no mixed run on all cores passed',
    );
  }
  const failures = results.servers.filter((record) => record.failure !== null);
  const exitCode = failures.length > 0 || failedRequests(results.servers).total > 0 ? 1 : 0;
  const tables = resultsDocument(machine, facts, all, cpus.length, new Map()).join('\n');
  if (options.json) {
    process.stderr.write(`\n${tables}\n`);
    const json = {
      date: date.toISOString(),
      machine,
      options,
      transport: describeTransport(settings.transport),
      plan,
      pgbench: all.map((section) => section.pgbench),
      configurations: all.flatMap((section) => section.configs),
      targets: all.map((section) => ({ connections: section.connections, rows: section.targets })),
      runs: results.servers,
      exitCode,
    };
    process.stdout.write(`${JSON.stringify(json)}\n`);
  } else {
    process.stdout.write(`\n${tables}\n`);
  }
  if (options.outDir) {
    const charts = await writeOutputs(options.outDir, results, all, settings, machine);
    writeFileSync(
      path.join(options.outDir, 'results.md'),
      resultsDocument(machine, facts, all, cpus.length, charts).join('\n'),
    );
    progress(
      `wrote results.md, runs.csv${[...charts.values()]
        .flat()
        .map((file) => `, ${file}`)
        .join('')} to ${options.outDir}`,
    );
  }
  if (failures.length > 0) {
    progress(`${failures.length} run(s) FAILED:`);
    for (const record of failures) {
      progress(
        `- ${configName(record.step)}, ${record.step.connections} connections, repeat ${record.step.repeat}: ${record.failure}`,
      );
    }
  }
  return exitCode;
}

await runBenchmark(main);
