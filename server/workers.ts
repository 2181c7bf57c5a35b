/**
 * The primary process of a multi-process server (WORKERS > 1): forks workers
 * that share the listening port (node:cluster), replaces any that die, and on
 * SIGINT/SIGTERM waits for every worker's graceful shutdown before it exits.
 */
import cluster, { type Worker } from 'node:cluster';
import { createPool } from './store/pool.js';
import { log } from './log.js';
import { reachable, startOperationsServer } from './observability/http.js';
import { AggregatorRegistry } from './observability/metrics.js';

/** Workers keep their own metrics; the primary asks each for them at scrape time. */
async function serveAggregatedMetrics(options: WorkersOptions): Promise<void> {
  const aggregator = new AggregatorRegistry();
  const pool = createPool({ databaseUrl: options.databaseUrl, maxConnections: 1, connectionTimeoutMs: 1_000 });
  try {
    await startOperationsServer(options.metricsPort as number, options.metricsHost, {
      metrics: async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() }),
      // Redis is each worker's business; the primary reports what it can see itself.
      health: async () => ({ postgres: (await reachable(() => pool.query('SELECT 1'))) ? 'ok' : 'unreachable', redis: 'off' }),
    });
    log.info('metrics and health on HTTP', { port: options.metricsPort, paths: ['/metrics', '/healthz'] });
  } catch (error) {
    log.error('metrics server failed to start', { error: String(error) });
  }
}

export type WorkersOptions = {
  workers: number;
  /** Handed to each worker, so all of them use the database the primary chose. */
  databaseUrl: string;
  /** When set, the primary serves /metrics aggregated over the workers, and /healthz. */
  metricsPort: number | null;
  metricsHost: string;
  /** Runs after the last worker stopped (stops the embedded PostgreSQL). */
  onStopped: () => Promise<void> | undefined;
};

export function runWorkers(options: WorkersOptions): void {
  let stopping = false;
  const fork = (): Worker => cluster.fork({ DATABASE_URL: options.databaseUrl });
  for (let index = 0; index < options.workers; index++) fork();
  log.info('started workers', { workers: options.workers });
  if (options.metricsPort !== null) void serveAggregatedMetrics(options);

  // Replacements back off (0.1 s doubling to 10 s) while workers keep dying fast, e.g.
  // while PostgreSQL is down at start-up, instead of forking in a tight loop.
  let restartDelayMs = 100;
  let lastExit = 0;
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    const now = Date.now();
    restartDelayMs = now - lastExit > 30_000 ? 100 : Math.min(restartDelayMs * 2, 10_000);
    lastExit = now;
    // A worker that crashed takes only its own connections with it; replace it.
    log.error('worker died; starting a replacement', { pid: worker.process.pid, code, signal, inMs: restartDelayMs });
    setTimeout(() => {
      if (!stopping) fork();
    }, restartDelayMs);
  });

  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info('stopping workers', { signal });
    const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
    await Promise.all(workers.map((worker) => new Promise<void>((resolve) => {
      if (worker.isDead()) return resolve();
      worker.once('exit', () => resolve());
      worker.process.kill('SIGTERM');
    })));
    await options.onStopped();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}
