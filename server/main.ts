/** Entry point: configuration, database, schema, workers, signals; exchange-server.ts assembles the rest. */
import { ConfigError, helpText, loadConfig, type Config } from './config.js';
import { startExchangeServer } from './exchange-server.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './store/embedded.js';
import { applySchema } from './store/migrate.js';
import { createPool } from './store/pool.js';
import { configureLog, log } from './log.js';
import cluster from 'node:cluster';
import { runWorkers, type StartFailedMessage } from './workers.js';
import { SHARED_LANE_METRICS, registerSources, registry, writeLaneTotals } from './observability/metrics.js';
import { ForwardedWrites } from './store/forwarded-writes.js';
import { ForwardedDurability } from './store/forwarded-durability.js';
import { exitOnStopSignal, onStopSignal } from './signals.js';

async function run(config: Config): Promise<void> {
  // A worker's database was chosen (and its schema applied) by the primary.
  if (cluster.isWorker) return serve(config, config.databaseUrl as string, null, false);
  if (config.databaseUrl !== null) return start(config, config.databaseUrl, null);
  log.info('DATABASE_URL unset: starting embedded PostgreSQL', {
    dataDir: config.dataDir,
    port: config.embeddedPgPort,
  });
  const embedded = await startEmbeddedPostgres(config.dataDir, config.embeddedPgPort);
  log.info(`embedded PostgreSQL ${embedded.version} running; data is kept in this directory across restarts`, {
    dataDir: config.dataDir,
    postgresPid: embedded.pid,
  });
  try {
    await start(config, embedded.url, embedded);
  } catch (error) {
    // Do not leave an orphaned PostgreSQL behind when start-up fails (say, the port is taken).
    await embedded.stop().catch(() => undefined);
    throw error;
  }
}

/** A URL to show: the embedded database's in full (psql can use it), anyone else's without its password. */
function shownDatabaseUrl(databaseUrl: string, embedded: EmbeddedDatabase | null): string {
  if (embedded) return databaseUrl;
  try {
    const url = new URL(databaseUrl);
    if (url.password !== '') url.password = '***';
    return url.toString();
  } catch {
    return '(unparsable DATABASE_URL)';
  }
}

/** The one line a user needs once the server is up: where to connect, how it frames replies, what it runs on. */
function logReady(config: Config, databaseUrl: string, embedded: EmbeddedDatabase | null): void {
  const address = `${config.host}:${config.port}`;
  log.info(
    `ready: listening on ${address}, ${config.replyFraming} reply framing, ${config.workers} process${config.workers === 1 ? '' : 'es'}`,
    {
      listen: address,
      replyFraming: config.replyFraming,
      workers: config.workers,
      database: shownDatabaseUrl(databaseUrl, embedded),
      redis: config.redisUrl === null ? 'off' : shownDatabaseUrl(config.redisUrl, null),
      metrics: config.metricsPort === null ? 'off' : `http://${config.metricsHost}:${config.metricsPort}/metrics`,
      dashboard: config.metricsPort === null ? 'off' : `http://${config.metricsHost}:${config.metricsPort}/`,
    },
  );
}

async function start(config: Config, databaseUrl: string, embedded: EmbeddedDatabase | null): Promise<void> {
  if (config.workers === 1) return serve(config, databaseUrl, embedded, true);
  const pool = createPool({ databaseUrl, maxConnections: 1 });
  try {
    await applySchema(pool);
  } finally {
    await pool.end();
  }
  runWorkers({
    workers: config.workers,
    databaseUrl,
    redisUrl: config.redisUrl,
    metricsPort: config.metricsPort,
    metricsHost: config.metricsHost,
    adminToken: config.adminToken,
    sharedWrites:
      config.writeQueue === 'shared'
        ? {
            writeFlush: config.writeFlush,
            writeTimeoutMs: config.writeTimeoutMs,
            poolSize: config.dbPoolSize,
            poolMin: config.dbPoolMin,
          }
        : null,
    onListening: () => logReady(config, databaseUrl, embedded),
    onStopped: () => embedded?.stop(),
  });
}

/** Sends one message to the primary over the cluster's IPC channel. */
function sendToPrimary(message: unknown, sent: (error: Error | null) => void): void {
  if (!process.send || !process.connected) {
    sent(new Error('no channel to the primary'));
    return;
  }
  process.send(message, undefined, {}, (error: Error | null) => sent(error ?? null));
}

/**
 * A worker's writes go to the primary's one write lane (workers.ts), and its status reads
 * wait for durability on the primary's barrier, which rides on that lane's commits.
 */
function forwardToPrimary(): { writes: ForwardedWrites; durability: ForwardedDurability } {
  const writes = new ForwardedWrites(sendToPrimary);
  const durability = new ForwardedDurability(sendToPrimary);
  process.on('message', (message) => writes.receive(message) || durability.receive(message));
  process.once('disconnect', () => {
    writes.close('the primary process went away');
    durability.close('the primary process went away');
  });
  // Batches form, and flushes happen, in the primary, which reports them.
  for (const name of SHARED_LANE_METRICS) registry.removeSingleMetric(name);
  return { writes, durability };
}

async function serve(
  config: Config,
  databaseUrl: string,
  embedded: EmbeddedDatabase | null,
  migrate: boolean,
): Promise<void> {
  const forwarded = cluster.isWorker && config.writeQueue === 'shared' ? forwardToPrimary() : null;
  const writes = forwarded?.writes ?? null;
  // In a multi-process server the primary serves the (aggregated) metrics.
  const server = await startExchangeServer(
    { ...config, databaseUrl },
    {
      migrate,
      operationsPort: !cluster.isWorker,
      writes: forwarded?.writes,
      durability: forwarded?.durability,
    },
  );
  const { pool, store: database, listener, cache } = server;
  // This process's retries, and those the shared write lane reported to it.
  const retries = () => ({
    retries: database.retryCounters.retries + (writes?.retryCounters.retries ?? 0),
    exhausted: database.retryCounters.exhausted + (writes?.retryCounters.exhausted ?? 0),
  });
  registerSources({
    retries,
    cache: () => cache?.counters ?? null,
    openConnections: () => listener.connectionCount,
    buffered: () => ({ bytes: listener.budget.usedBytes, waiting: listener.budget.waitingCount }),
    pool: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
  });
  if (!cluster.isWorker) logReady({ ...config, port: server.port }, databaseUrl, embedded);

  const stopEverything = async (signal: string): Promise<void> => {
    log.info('shutting down', { signal });
    await server.close();
    if (embedded) await embedded.stop();
    log.info('stopped', {
      serializationRetries: retries().retries,
      retriesExhausted: retries().exhausted,
      writeLane: await writeLaneTotals(),
      cache: cache ? cache.counters : 'off',
    });
  };
  // One shutdown, however many signals arrive: a repeated signal must not exit early.
  let shutdownDone: Promise<void> | null = null;
  const shutdown = (signal: string): Promise<void> => (shutdownDone ??= stopEverything(signal));
  onStopSignal((signal) => {
    shutdown(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        log.error('shutdown failed', { error: String(error) });
        process.exit(1);
      },
    );
  });
}

let parsed: ReturnType<typeof loadConfig>;
try {
  parsed = loadConfig(process.argv.slice(2), process.env);
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`configuration error: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
if (parsed.help) {
  process.stdout.write(helpText());
} else {
  configureLog(parsed.config.logLevel, parsed.config.logFormat);
  exitOnStopSignal();
  run(parsed.config).catch((error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error);
    log.error('failed to start', { error: reason });
    // A worker tells the primary why, so the primary can exit with the reason instead of restarting it.
    if (cluster.isWorker && process.send) {
      const message: StartFailedMessage = { type: 'start-failed', reason };
      process.send(message, undefined, {}, () => process.exit(1));
    } else {
      process.exit(1);
    }
  });
}
