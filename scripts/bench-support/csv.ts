/** runs.csv: one row per run, pgbench's and the server's, with every figure the run measured. */
import { writeFileSync } from 'node:fs';
import { type PgbenchFigures, runFigures } from './figures.js';
import { writeQueueOf } from './plan.js';
import type { Results, Settings } from './runner.js';
import { describeTransport } from './transport.js';

/** Empty, not 'n/a' or NaN, where a run measured nothing: spreadsheets read that as missing. */
const fixed = (value: number | undefined, digits: number): string =>
  value === undefined || !Number.isFinite(value) ? '' : value.toFixed(digits);

function csvField(value: string | number): string {
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

const COLUMNS = [
  'kind',
  'timestamp',
  'connections',
  'run',
  'cores',
  'cpus',
  'workers',
  'write_queue',
  'repeat',
  'scenarios',
  'seconds',
  'warmup',
  'transport',
  'rate',
  'requests_per_s',
  'orders_per_s',
  'p50_ms',
  'p90_ms',
  'p99_ms',
  'p999_ms',
  'max_ms',
  'failed_requests',
  'pgbench_tps',
  'ratio_to_pgbench',
  'serialization_retries',
  'retries_exhausted',
  'retries_per_100_orders',
  'pg_sessions',
  'pg_commits',
  'pg_rollbacks',
  'sessions_per_100_orders',
  'commits_per_100_requests',
  'cpu_server_cores',
  'cpu_postgres_cores',
  'cpu_client_cores',
  'cpu_other_cores',
  'machine_busy_pct',
  'server_us_per_request',
  'postgres_us_per_request',
  'client_us_per_request',
  'server_us_per_order',
  'wal_bytes_per_order',
  'write_lane_busy',
  'write_lane_ms_per_batch',
  'writes_per_batch',
  'invariants_checked',
  'run_failure',
] as const;
type Row = Partial<Record<(typeof COLUMNS)[number], string | number>>;

export function writeRunsCsv(file: string, results: Results, pgbench: PgbenchFigures[], settings: Settings): void {
  const pgbenchRows = results.pgbench.map(
    (record): Row => ({
      kind: 'pgbench',
      timestamp: record.timestamp,
      connections: record.step.connections,
      run: 'pgbench -N',
      repeat: record.step.repeat,
      seconds: settings.seconds,
      transport: describeTransport(settings.transport),
      pgbench_tps: fixed(record.tps, 1),
    }),
  );
  const serverRows = results.servers.map((record): Row => {
    const { step, stress, cpu, database } = record;
    const figures = runFigures(record, settings);
    const baseline = pgbench.find((entry) => entry.connections === step.connections)?.mean;
    return {
      kind: 'server',
      timestamp: record.timestamp,
      connections: step.connections,
      run: step.load,
      cores: step.cpus.length,
      cpus: step.cpus.join(' '),
      workers: step.workers,
      write_queue: writeQueueOf(step),
      repeat: step.repeat,
      scenarios: step.scenarios.join(' '),
      seconds: settings.seconds,
      warmup: settings.warmup,
      transport: describeTransport(settings.transport),
      rate: record.rate ?? '',
      requests_per_s: fixed(stress?.requestsPerSecond, 1),
      orders_per_s: fixed(stress?.ordersPerSecond, 1),
      p50_ms: fixed(stress?.latencyMs.p50, 3),
      p90_ms: fixed(stress?.latencyMs.p90, 3),
      p99_ms: fixed(stress?.latencyMs.p99, 3),
      p999_ms: fixed(stress?.latencyMs.p999, 3),
      max_ms: fixed(stress?.latencyMs.max, 3),
      failed_requests: stress?.failedRequests ?? '',
      pgbench_tps: fixed(baseline, 1),
      ratio_to_pgbench: stress && baseline ? fixed(stress.ordersPerSecond / baseline, 4) : '',
      serialization_retries: record.serializationRetries,
      retries_exhausted: record.retriesExhausted,
      retries_per_100_orders: fixed(figures.retriesPer100Orders, 3),
      pg_sessions: database?.sessions ?? '',
      pg_commits: database?.commits ?? '',
      pg_rollbacks: database?.rollbacks ?? '',
      sessions_per_100_orders: fixed(figures.sessionsPer100Orders, 3),
      commits_per_100_requests: fixed(figures.commitsPer100Requests, 1),
      cpu_server_cores: fixed(cpu?.server, 2),
      cpu_postgres_cores: fixed(cpu?.postgres, 2),
      cpu_client_cores: fixed(cpu?.client, 2),
      cpu_other_cores: fixed(cpu?.other, 2),
      machine_busy_pct: fixed(cpu?.machineBusyPercent, 1),
      server_us_per_request: fixed(figures.serverUsPerRequest, 1),
      postgres_us_per_request: fixed(figures.postgresUsPerRequest, 1),
      client_us_per_request: fixed(figures.clientUsPerRequest, 1),
      server_us_per_order: fixed(figures.serverUsPerOrder, 1),
      wal_bytes_per_order: fixed(figures.walBytesPerOrder, 0),
      write_lane_busy: fixed(figures.writeLaneBusy, 3),
      write_lane_ms_per_batch: fixed(figures.writeLaneMsPerBatch, 3),
      writes_per_batch: fixed(figures.writesPerBatch, 2),
      invariants_checked: stress?.invariants.checked ?? '',
      run_failure: record.failure ?? '',
    };
  });
  const line = (cells: Array<string | number>): string => cells.map(csvField).join(',');
  const rows = [...pgbenchRows, ...serverRows].map((row) => line(COLUMNS.map((column) => row[column] ?? '')));
  writeFileSync(file, `${[line([...COLUMNS]), ...rows].join('\n')}\n`);
}
