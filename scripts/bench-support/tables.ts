/**
 * The benchmark's markdown tables: the plan, the machine, pgbench, the targets, each
 * configuration's figures and costs, PostgreSQL's statements. Data only: what the columns mean
 * is written once, by hand, in docs/performance.md.
 */
import { formatCpuUse } from './cpu.js';
import type { ConfigFigures, PgbenchFigures } from './figures.js';
import type { Machine } from './machine.js';
import { configName, estimatedSeconds, type Step } from './plan.js';
import { minutes, type ServerRecord, type Settings } from './runner.js';
import { fixed, meanAndSd } from './stats.js';
import type { TargetRow } from './targets.js';
import { describeTransport } from './transport.js';

/** A markdown table with aligned columns, so it reads in a terminal and pastes into a document. */
export function markdownTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [line(header), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...rows.map(line)];
}

export function planTable(plan: Step[], settings: Settings): string[] {
  const total = plan.reduce((sum, step) => sum + estimatedSeconds(step, settings), 0);
  return [
    ...markdownTable(
      ['#', 'run', 'connections', 'cpus', 'workers', 'repeat', 'scenarios', 'seconds'],
      plan.map((step, index) => [
        String(index + 1),
        step.kind === 'pgbench' ? 'pgbench -N' : configName(step),
        String(step.connections),
        step.kind === 'pgbench' ? '-' : step.cpus.join(','),
        step.kind === 'pgbench' ? '-' : String(step.workers),
        String(step.repeat),
        step.kind === 'pgbench' ? '-' : step.scenarios.join(', '),
        String(estimatedSeconds(step, settings)),
      ]),
    ),
    '',
    `${plan.length} runs, about ${minutes(total)} (min:s); PostgreSQL over ${describeTransport(settings.transport)}`,
  ];
}

export type RunFacts = { date: Date; command: string; settings: Settings; quick: boolean };

/** When, how and on what the benchmark ran. */
export function machineTable(machine: Machine, facts: RunFacts): string[] {
  const { seconds, warmup, repeats } = facts.settings;
  return markdownTable(
    ['', ''],
    [
      ['date', `${facts.date.toISOString().slice(0, 16).replace('T', ' ')} UTC`],
      ['command', `\`${facts.command}\``],
      ['runs', `${repeats} × ${seconds} s measured after ${warmup} s warm-up${facts.quick ? ' (--quick)' : ''}`],
      ['CPU', `${machine.cpuModel}, ${machine.cores} cores available`],
      ['memory', `${machine.memoryGiB.toFixed(1)} GiB`],
      ['PostgreSQL', machine.postgres],
      ['PostgreSQL transport', `${describeTransport(facts.settings.transport)} (server and pgbench)`],
      ['PostgreSQL settings', machine.pgSettings],
      ['Node', machine.node],
      ['kernel', machine.kernel],
    ],
  );
}

export function pgbenchTable(figures: PgbenchFigures): string[] {
  return markdownTable(
    ['command', 'tps per run', 'mean tps'],
    [[`\`${figures.command}\``, figures.tps.map((tps) => tps.toFixed(0)).join(', '), fixed(figures.mean)]],
  );
}

export function targetsTable(rows: TargetRow[]): string[] {
  const met = (value: boolean | null): string => (value === null ? '-' : value ? 'yes' : 'NO');
  return markdownTable(
    ['target', 'measured', 'target value', 'met?'],
    rows.map((row) => [row.target, row.measured, row.targetValue, met(row.met)]),
  );
}

const runsCell = (config: ConfigFigures): string =>
  config.passed === config.runs ? String(config.runs) : `${config.runs} (${config.runs - config.passed} failed)`;

/** Throughput, latency and what explains them, per configuration (mean ± sd over repeats). */
export function configurationsTable(configs: ConfigFigures[]): string[] {
  return markdownTable(
    [
      'run',
      'cpus',
      'workers',
      'runs',
      'rate',
      'orders/s',
      'requests/s',
      'p50 ms',
      'p99 ms',
      'vs pgbench',
      'retries /100 orders',
      'sessions /100 orders',
      'commits /100 requests',
      'CPU server / PG / client / other (busy)',
    ],
    configs.map((config) => [
      config.name,
      config.cpus.join(','),
      String(config.workers),
      runsCell(config),
      config.rate === null ? '-' : fixed(config.rate),
      meanAndSd(config.orders),
      meanAndSd(config.requests),
      meanAndSd(config.p50, 2),
      meanAndSd(config.p99, 2),
      `${fixed(config.ratioToPgbench, 2)}x`,
      fixed(config.retriesPer100Orders, 2),
      fixed(config.sessionsPer100Orders, 2),
      fixed(config.commitsPer100Requests),
      formatCpuUse(config.cpu),
    ]),
  );
}

/** What a request cost per configuration: CPU of server, PostgreSQL and client; WAL per order; the write lane's load. */
export function costTable(configs: ConfigFigures[]): string[] {
  return markdownTable(
    [
      'run',
      'workers',
      'requests/s',
      'server µs/request',
      'PostgreSQL µs/request',
      'client µs/request',
      'other (cores)',
      'WAL bytes/order',
      'write lane busy',
      'lane ms/batch',
      'writes/batch',
    ],
    configs.map((config) => [
      config.name,
      String(config.workers),
      fixed(config.requests.mean),
      fixed(config.serverUsPerRequest),
      fixed(config.postgresUsPerRequest),
      fixed(config.clientUsPerRequest),
      fixed(config.cpu?.other ?? Number.NaN, 2),
      fixed(config.walBytesPerOrder),
      Number.isFinite(config.writeLaneBusy) ? `${fixed(100 * config.writeLaneBusy)}%` : 'n/a',
      fixed(config.writeLaneMsPerBatch, 2),
      fixed(config.writesPerBatch, 1),
    ]),
  );
}

/** PostgreSQL's ten costliest statements in one run, by execution plus planning time per order. */
export function statementsTable(record: ServerRecord, seconds: number): string[] {
  const statements = record.postgres?.statements ?? [];
  const orders = (record.stress?.ordersPerSecond ?? Number.NaN) * seconds;
  return markdownTable(
    ['µs/order', 'of it planning', 'calls/order', 'statement'],
    statements
      .slice(0, 10)
      .map((statement) => [
        fixed((1000 * (statement.execMs + statement.planMs)) / orders, 1),
        fixed((1000 * statement.planMs) / orders, 1),
        fixed(statement.calls / orders, 3),
        `\`${statement.query.slice(0, 110).replace(/`/g, "'")}\``,
      ]),
  );
}
