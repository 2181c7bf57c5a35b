/**
 * The primary process of a multi-process server (WORKERS > 1): forks workers
 * that share the listening port (node:cluster), replaces any that die, and on
 * SIGINT/SIGTERM/SIGHUP waits for every worker's graceful shutdown before it exits.
 * A server none of whose workers ever started (the port is taken, say) is not
 * restarted forever: the primary exits 1 with the reason, as one process would.
 */
import cluster, { type Worker } from 'node:cluster';
import { createPool, poolWarmed } from './store/pool.js';
import { log } from './log.js';
import { reachable } from './observability/http.js';
import { startOperationsPort } from './admin/operations-port.js';
import { AggregatorRegistry } from './observability/metrics.js';
import { RedisReadCache } from './cache/read-cache.js';
import { onStopSignal } from './signals.js';
import { WriteLane, type WriteFlush } from './store/write-lane.js';
import { answerForwardedWrites, isForwardedWritesMessage } from './store/forwarded-writes.js';
import { answerForwardedDurability, isForwardedDurabilityMessage } from './store/forwarded-durability.js';
import { SHARED_LANE_METRICS, registry, writeLaneTotals } from './observability/metrics.js';

/** What a worker tells the primary just before it exits because it could not start. */
export type StartFailedMessage = { type: 'start-failed'; reason: string };

export function isStartFailedMessage(message: unknown): message is StartFailedMessage {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'start-failed';
}

export type WorkersOptions = {
  workers: number;
  /** Handed to each worker, so all of them use the database the primary chose. */
  databaseUrl: string;
  /** The health check pings Redis itself when the workers use it. */
  redisUrl: string | null;
  /** When set, the primary serves /metrics aggregated over the workers, and /healthz. */
  metricsPort: number | null;
  metricsHost: string;
  /** The operator API's token (null: /api/accounts is off). */
  adminToken: string | null;
  /** When set, the primary runs the one write lane every worker forwards its orders and cancels to. */
  sharedWrites: { writeFlush: WriteFlush; writeTimeoutMs: number; poolSize: number; poolMin: number } | null;
  /** Runs once the first worker listens (the "ready" line). */
  onListening: () => void;
  /** Runs after the last worker stopped (stops the embedded PostgreSQL). */
  onStopped: () => Promise<void> | undefined;
};

/** The primary's own families to add to the workers' (the shared write lane batches and flushes here, not in a worker). */
async function primaryMetrics(options: WorkersOptions): Promise<string> {
  if (options.sharedWrites === null) return '';
  const families = await Promise.all(SHARED_LANE_METRICS.map((name) => registry.getSingleMetricAsString(name)));
  // A blank line first: the workers' text may or may not end with a line break.
  return `\n${families.join('\n')}\n`;
}

/** Workers keep their own metrics; the primary asks each for them at scrape time. */
async function serveOperations(options: WorkersOptions, listening: () => number): Promise<() => Promise<void>> {
  const aggregator = new AggregatorRegistry();
  const pool = createPool({ databaseUrl: options.databaseUrl, maxConnections: 1, connectionTimeoutMs: 1_000 });
  // Its own client, so /healthz says what Redis does, not what the primary lacks (it has no cache).
  const redis =
    options.redisUrl === null
      ? null
      : new RedisReadCache({ url: options.redisUrl, ttlSeconds: 1, commandTimeoutMs: 1_000 });
  const closeClients = async () => {
    await pool.end().catch(() => undefined);
    await redis?.close();
  };
  try {
    const operations = await startOperationsPort({
      port: options.metricsPort as number,
      host: options.metricsHost,
      databaseUrl: options.databaseUrl,
      adminToken: options.adminToken,
      metrics: async () => ({
        contentType: aggregator.contentType,
        body: (await aggregator.clusterMetrics()) + (await primaryMetrics(options)),
      }),
      health: async () => ({
        server: listening() > 0 ? 'listening' : 'starting',
        workers: { listening: listening(), wanted: options.workers },
        postgres: (await reachable(() => pool.query('SELECT 1'))) ? 'ok' : 'unreachable',
        redis: redis === null ? 'off' : (await reachable(() => redis.ping())) ? 'ok' : 'unreachable',
      }),
    });
    return async () => {
      await operations.close();
      await closeClients();
    };
  } catch (error) {
    log.error('metrics server failed to start', { error: String(error) });
    await closeClients();
    return async () => undefined;
  }
}

/**
 * The host's one write lane: every worker forwards its orders and cancels here
 * (forwarded-writes.ts). Its pool outlives the workers: it closes after they stopped.
 */
function runSharedWriteLane(
  options: WorkersOptions,
  settings: NonNullable<WorkersOptions['sharedWrites']>,
): () => Promise<void> {
  const pool = createPool({
    databaseUrl: options.databaseUrl,
    maxConnections: settings.poolSize,
    minConnections: settings.poolMin,
    onIdleError: (error) => log.warn('idle database connection lost', { error: error.message }),
    onWarmFailure: (error) => log.warn('cannot open a kept database connection; retrying', { error: error.message }),
  });
  void poolWarmed(pool).catch(() => undefined);
  const lane = new WriteLane(pool, { writeFlush: settings.writeFlush, writeTimeoutMs: settings.writeTimeoutMs });
  const reported = { retries: 0, exhausted: 0 };
  cluster.on('message', (worker, message: unknown) => {
    // A worker that died took its clients with it: nobody waits for an answer to it.
    const answer = (reply: object) => {
      if (worker.isConnected()) worker.send(reply, undefined, {}, () => undefined);
    };
    if (isForwardedWritesMessage(message))
      void answerForwardedWrites(lane, lane.retryCounters, reported, message, answer);
    else if (isForwardedDurabilityMessage(message)) void answerForwardedDurability(lane.durability, message, answer);
  });
  log.info(
    'one write lane for every worker: workers forward orders and cancels, and their status reads wait for durability, here',
  );
  return () => pool.end();
}

/** Longer than a worker's own graceful shutdown (SHUTDOWN_TIMEOUT_MS, 10 s by default, and closing its clients). */
const WORKER_STOP_DEADLINE_MS = 60_000;

export function runWorkers(options: WorkersOptions): void {
  let stopping = false;
  /** Workers listening now. */
  const listening = new Set<number>();
  /** Whether any worker has ever listened: until then, a worker's death is a failed start. */
  let started = false;
  const startFailures = new Map<number, string>();
  // Workers accept connections themselves (SCHED_NONE). With node's default round robin the
  // primary accepts each one and hands it over; a connection handed to a worker that dies in
  // that instant stayed open in the primary, unread, and its client waited forever (found by
  // the worker-kill fault test). Measured on 2 workers: no slower than round robin.
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const closeWriteLane = options.sharedWrites === null ? null : runSharedWriteLane(options, options.sharedWrites);
  const fork = (): Worker => cluster.fork({ DATABASE_URL: options.databaseUrl });
  for (let index = 0; index < options.workers; index++) fork();
  log.info('started workers', { workers: options.workers });
  const closeOperations =
    options.metricsPort === null
      ? Promise.resolve(async () => undefined)
      : serveOperations(options, () => listening.size);

  cluster.on('listening', (worker) => {
    listening.add(worker.id);
    if (!started) {
      started = true;
      options.onListening();
    }
  });
  cluster.on('message', (worker, message: unknown) => {
    if (isStartFailedMessage(message)) startFailures.set(worker.id, message.reason);
  });

  const stopAll = async (): Promise<void> => {
    const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
    await Promise.all(
      workers.map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.isDead()) return resolve();
            // A worker still starting was seen to miss a SIGTERM now and then (it went on to
            // listen, and the primary waited for it forever): repeat the signal until it exits
            // (a worker shuts down once, however many arrive), and kill it past the deadline.
            const deadline = Date.now() + WORKER_STOP_DEADLINE_MS;
            const again = setInterval(() => {
              if (Date.now() > deadline) {
                log.error('a worker did not stop in time; killing it', { workerPid: worker.process.pid });
                worker.process.kill('SIGKILL');
              } else {
                worker.process.kill('SIGTERM');
              }
            }, 1_000);
            worker.once('exit', () => {
              clearInterval(again);
              resolve();
            });
            worker.process.kill('SIGTERM');
          }),
      ),
    );
    await (await closeOperations)();
    // Only now: workers stopping still wait for their writes' answers.
    await closeWriteLane?.().catch(() => undefined);
    await options.onStopped();
  };

  // Replacements back off (0.1 s doubling to 10 s) while workers keep dying fast, e.g.
  // while PostgreSQL is down, instead of forking in a tight loop.
  let restartDelayMs = 100;
  let lastExit = 0;
  cluster.on('exit', (worker, code, signal) => {
    listening.delete(worker.id);
    if (stopping) return;
    if (!started) {
      // No worker ever listened: the others will fail the same way (the port is taken, the
      // address cannot be bound). Say why and exit, whatever WORKERS is.
      stopping = true;
      const reason =
        startFailures.get(worker.id) ?? `a worker exited with ${signal ?? `code ${code}`} before listening`;
      log.error('failed to start', { error: reason });
      void stopAll().finally(() => process.exit(1));
      return;
    }
    const now = Date.now();
    restartDelayMs = now - lastExit > 30_000 ? 100 : Math.min(restartDelayMs * 2, 10_000);
    lastExit = now;
    // A worker that crashed takes only its own connections with it; replace it.
    log.error('worker died; starting a replacement', {
      workerPid: worker.process.pid,
      code,
      signal,
      inMs: restartDelayMs,
    });
    setTimeout(() => {
      if (!stopping) fork();
    }, restartDelayMs);
  });

  const stop = async (signal: NodeJS.Signals): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info('stopping workers', { signal });
    await stopAll();
    // The shared write lane runs here; with per-worker queues these are zero.
    log.info('stopped', { writeLane: await writeLaneTotals() });
    process.exit(0);
  };
  onStopSignal((signal) => void stop(signal));
}
