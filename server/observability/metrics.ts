/**
 * Prometheus metrics (prom-client, default registry so node:cluster workers
 * can be aggregated by the primary). Counters the code increments live here;
 * values other modules already keep (pool, connections, retries, cache) are
 * read at scrape time through registerSources().
 */
import cluster from 'node:cluster';
import client from 'prom-client';

client.collectDefaultMetrics();
// The primary sums each metric over the workers unless told otherwise: the fd limit is every
// process's own, and the workers' sum of it is no limit of anything.
const maxFds = client.register.getSingleMetric('process_max_fds') as { aggregator?: string } | undefined;
if (maxFds) maxFds.aggregator = 'max';
// prom-client installs a worker's answer to the primary's "send me your metrics"
// only when an AggregatorRegistry is constructed in that worker.
if (cluster.isWorker) new client.AggregatorRegistry();

/** Observed where write batches form: the primary when workers share its write lane (workers.ts). */
export const WRITE_BATCH_SIZE_METRIC = 'exchange_write_batch_size';
/** Counted where replies wait for durability: the primary too when workers share its lane (forwarded-durability.ts). */
export const WAL_FLUSHES_METRIC = 'exchange_wal_flushes_total';
/** Observed where write batches run: the primary when workers share its write lane. */
export const WRITE_LANE_BUSY_METRIC = 'exchange_write_lane_busy_seconds_total';
/** The families only the primary observes when workers share its write lane. */
export const SHARED_LANE_METRICS = [WRITE_BATCH_SIZE_METRIC, WAL_FLUSHES_METRIC, WRITE_LANE_BUSY_METRIC];

const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export const metrics = {
  requests: new client.Counter({
    name: 'exchange_requests_total',
    help: 'Requests processed, by root element',
    labelNames: ['root'],
  }),
  requestDuration: new client.Histogram({
    name: 'exchange_request_duration_seconds',
    help: 'Time from a whole request to its reply, by root element',
    labelNames: ['root'],
    buckets: latencyBuckets,
  }),
  results: new client.Counter({
    name: 'exchange_results_total',
    help: 'Reply elements, by name (created, opened, status, canceled, error)',
    labelNames: ['result'],
  }),
  ordersOpened: new client.Counter({ name: 'exchange_orders_opened_total', help: 'Orders opened' }),
  fills: new client.Counter({
    name: 'exchange_fills_total',
    help: 'Executions (one per resting order an incoming order traded with)',
  }),
  cancels: new client.Counter({ name: 'exchange_cancels_total', help: 'Orders canceled' }),
  errors: new client.Counter({
    name: 'exchange_errors_total',
    help: 'Error reply elements (item and request level), by code (server/errors.ts)',
    labelNames: ['code'],
  }),
  /** The label is named reason for dashboards made before codes; its values are the codes. */
  framingErrors: new client.Counter({
    name: 'exchange_framing_errors_total',
    help: 'Connections ended by a framing error or timeout, by code (server/errors.ts)',
    labelNames: ['reason'],
  }),
  writeBatchSize: new client.Histogram({
    name: WRITE_BATCH_SIZE_METRIC,
    help: 'Writes (orders and cancels) committed per transaction',
    buckets: [1, 2, 4, 8, 16, 32, 64],
  }),
  walFlushes: new client.Counter({
    name: WAL_FLUSHES_METRIC,
    help: 'WAL flushes forced so that replies wait for durable state (small synchronous commits; waits that rode on a write batch commit force none)',
  }),
  writeLaneBusy: new client.Counter({
    name: WRITE_LANE_BUSY_METRIC,
    help: "Seconds the write lane had a batch's transaction in flight, from its message to its results (retries included); its rate is the share of time the lane is busy, near 1 when it limits the exchange",
  }),
  readBatchSize: new client.Histogram({
    name: 'exchange_read_batch_size',
    help: 'Order-status lookups read per statement',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
  }),
};

export type MetricSources = {
  retries: () => { retries: number; exhausted: number };
  cache: () => { hits: number; misses: number; errors: number; rejected: number } | null;
  openConnections: () => number;
  /** Bytes held for clients (the MAX_BUFFERED_BYTES budget), and connections waiting for room in it. */
  buffered: () => { bytes: number; waiting: number };
  pool: () => { total: number; idle: number; waiting: number };
};

/** Gauges and counters whose values are read from their owners when scraped. */
export function registerSources(sources: MetricSources): void {
  const counterFrom = (name: string, help: string, read: () => number | null) =>
    new client.Counter({
      name,
      help,
      collect() {
        const value = read();
        this.reset();
        if (value !== null) this.inc(value);
      },
    });
  counterFrom(
    'exchange_serialization_retries_total',
    'Transactions retried after 40001/40P01',
    () => sources.retries().retries,
  );
  counterFrom(
    'exchange_retries_exhausted_total',
    'Transactions given up after every retry (not applied)',
    () => sources.retries().exhausted,
  );
  counterFrom('exchange_cache_hits_total', 'Redis cache hits', () => sources.cache()?.hits ?? null);
  counterFrom(
    'exchange_cache_misses_total',
    'Redis cache misses (including Redis failures)',
    () => sources.cache()?.misses ?? null,
  );
  counterFrom(
    'exchange_cache_errors_total',
    'Redis errors (each answered from PostgreSQL)',
    () => sources.cache()?.errors ?? null,
  );
  counterFrom(
    'exchange_cache_rejected_total',
    'Redis entries refused (wrong shape or signature) and removed; also misses',
    () => sources.cache()?.rejected ?? null,
  );
  new client.Gauge({
    name: 'exchange_open_connections',
    help: 'Client connections open',
    collect() {
      this.set(sources.openConnections());
    },
  });
  new client.Gauge({
    name: 'exchange_buffered_bytes',
    help: 'Request and reply bytes held for clients (MAX_BUFFERED_BYTES)',
    collect() {
      this.set(sources.buffered().bytes);
    },
  });
  new client.Gauge({
    name: 'exchange_connections_waiting_for_memory',
    help: 'Connections not read from until the buffered bytes fall',
    collect() {
      this.set(sources.buffered().waiting);
    },
  });
  new client.Gauge({
    name: 'exchange_db_pool_connections',
    help: 'PostgreSQL pool connections, by state',
    labelNames: ['state'],
    collect() {
      const pool = sources.pool();
      this.set({ state: 'total' }, pool.total);
      this.set({ state: 'idle' }, pool.idle);
      this.set({ state: 'waiting' }, pool.waiting);
    },
  });
}

export const registry = client.register;
export const AggregatorRegistry = client.AggregatorRegistry;

/** This process's write lane so far, for its "stopped" log line (the benchmark reads it there). */
export async function writeLaneTotals(): Promise<{ busySeconds: number; batches: number; writes: number }> {
  const busy = await metrics.writeLaneBusy.get();
  const sizes = await metrics.writeBatchSize.get();
  const sampleValue = (name: string) => sizes.values.find((value) => value.metricName === name)?.value ?? 0;
  return {
    busySeconds: busy.values[0]?.value ?? 0,
    batches: sampleValue(`${WRITE_BATCH_SIZE_METRIC}_count`),
    writes: sampleValue(`${WRITE_BATCH_SIZE_METRIC}_sum`),
  };
}
