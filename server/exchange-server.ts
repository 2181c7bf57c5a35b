/**
 * One exchange server put together: pools, store, optional Redis cache, TCP listener,
 * and the operations port when configured. The one place these parts are assembled:
 * main.ts (the real process) and the tests' startTestServer both call it, so a test
 * server is the production one with other settings.
 */
import type pg from 'pg';
import type { Config } from './config.js';
import { createRequestProcessor } from './app.js';
import { ExchangeListener } from './net/listener.js';
import { isCompleteDocument } from './protocol/parse-request.js';
import { renderRequestError } from './protocol/render-reply.js';
import { PostgresExchangeStore, type ExchangeStore } from './store/exchange-store.js';
import type { WriteSubmitter } from './store/write-lane.js';
import type { DurabilityWaiter } from './store/durability.js';
import { CachedExchangeStore } from './cache/cached-store.js';
import { RedisReadCache } from './cache/read-cache.js';
import { applySchema } from './store/migrate.js';
import { createPool, poolWarmed } from './store/pool.js';
import { log } from './log.js';
import { metrics, registry } from './observability/metrics.js';
import { reachable } from './observability/http.js';
import { startOperationsPort, type OperationsPort } from './admin/operations-port.js';

/** The settings one server process needs; databaseUrl is resolved (an embedded database's, say). */
export type ExchangeServerConfig = Pick<
  Config,
  | 'host'
  | 'port'
  | 'redisUrl'
  | 'replyFraming'
  | 'maxRequestBytes'
  | 'requestTimeoutMs'
  | 'idleTimeoutMs'
  | 'graceMs'
  | 'maxConnections'
  | 'maxBufferedBytes'
  | 'dbPoolSize'
  | 'dbPoolMin'
  | 'writeFlush'
  | 'writeTimeoutMs'
  | 'slowRequestMs'
  | 'cacheTtlSeconds'
  | 'cacheTimeoutMs'
  | 'metricsPort'
  | 'metricsHost'
  | 'adminToken'
  | 'shutdownTimeoutMs'
> & { databaseUrl: string };

/** What differs between the real process and a server inside a test. */
export type ExchangeServerDeps = {
  /** Apply the schema before serving (default true; a worker's primary has done it already). */
  migrate?: boolean;
  /** Serve METRICS_PORT from this process when configured (default true; a worker leaves it to the primary). */
  operationsPort?: boolean;
  /** How long a batch whose outcome is in doubt is looked up (default: the store's). */
  outcomeLookupMs?: number;
  /** Where orders and cancels go (default: a write lane of this process). */
  writes?: WriteSubmitter;
  /** Where status reads wait for durability (default: this process's barrier). */
  durability?: DurabilityWaiter;
  /** An idle database connection was lost (default: a warning in the log). */
  onIdleError?: (error: Error) => void;
};

export type ExchangeServer = {
  /** The port the listener got (config.port 0: a free one). */
  port: number;
  pool: pg.Pool;
  /** The PostgreSQL store (for its retry counters); handlers see requestStore. */
  store: PostgresExchangeStore;
  /** What handlers call: the store, behind the cache when there is one. */
  requestStore: ExchangeStore;
  listener: ExchangeListener;
  /** The Redis cache; null without REDIS_URL. */
  cache: RedisReadCache | null;
  operations: OperationsPort | null;
  /**
   * Stops taking connections, waits up to config.shutdownTimeoutMs for requests in
   * flight, then releases pools and the cache. Callable once per server.
   */
  close: () => Promise<void>;
};

function listenError(config: ExchangeServerConfig, error: NodeJS.ErrnoException): Error {
  if (error.code === 'EADDRINUSE') {
    return new Error(
      `cannot listen on ${config.host}:${config.port}: the port is already in use (another server running there? choose another with PORT or --port)`,
    );
  }
  if (error.code === 'EACCES') return new Error(`cannot listen on ${config.host}:${config.port}: permission denied`);
  return error;
}

export async function startExchangeServer(
  config: ExchangeServerConfig,
  deps: ExchangeServerDeps = {},
): Promise<ExchangeServer> {
  const onIdleError =
    deps.onIdleError ?? ((error: Error) => log.warn('idle database connection lost', { error: error.message }));
  const { databaseUrl } = config;
  const onWarmFailure = (error: Error) =>
    log.warn('cannot open a kept database connection; retrying', { error: error.message });
  const pool = createPool({
    databaseUrl,
    maxConnections: config.dbPoolSize,
    minConnections: config.dbPoolMin,
    onIdleError,
    onWarmFailure,
  });
  // Everything opened so far is released if a later step fails (a port in use, Redis down).
  const opened: Array<() => Promise<void>> = [() => pool.end()];
  const release = async () => {
    for (const end of opened.reverse()) await end().catch(() => undefined);
  };
  try {
    if (deps.migrate ?? true) await applySchema(pool);
    // Status reads run one batch at a time: one connection, READ COMMITTED (see readStatuses).
    const statusReadPool = createPool({
      databaseUrl,
      maxConnections: 1,
      minConnections: config.dbPoolMin > 0 ? 1 : 0,
      isolation: 'read committed',
      onIdleError,
      onWarmFailure,
    });
    opened.push(() => statusReadPool.end());
    // Open the kept connections before serving; if that fails the pools open them on demand.
    // (A failure is logged and retried by the pool's warmer.)
    await Promise.all([poolWarmed(pool), poolWarmed(statusReadPool)]).catch(() => undefined);
    const database = new PostgresExchangeStore(pool, undefined, config.writeFlush, statusReadPool, {
      writeTimeoutMs: config.writeTimeoutMs,
      outcomeLookupMs: deps.outcomeLookupMs,
      writes: deps.writes,
      durability: deps.durability,
    });
    let cache: RedisReadCache | null = null;
    let store: ExchangeStore = database;
    if (config.redisUrl === null) {
      log.info('REDIS_URL unset: running without a cache; every read goes to PostgreSQL');
    } else {
      cache = new RedisReadCache({
        url: config.redisUrl,
        ttlSeconds: config.cacheTtlSeconds,
        commandTimeoutMs: config.cacheTimeoutMs,
      });
      const openedCache = cache;
      opened.push(() => openedCache.close());
      store = await CachedExchangeStore.create(database, cache, pool);
      log.info('read-through cache on Redis', { ttlSeconds: config.cacheTtlSeconds });
    }

    const listener = new ExchangeListener(
      {
        host: config.host,
        port: config.port,
        maxConnections: config.maxConnections,
        maxBufferedBytes: config.maxBufferedBytes,
        framing: config.replyFraming,
        maxRequestBytes: config.maxRequestBytes,
        requestTimeoutMs: config.requestTimeoutMs,
        idleTimeoutMs: config.idleTimeoutMs,
        graceMs: config.graceMs,
        maxQueuedRequests: 64,
      },
      {
        processRequest: createRequestProcessor(store, { slowRequestMs: config.slowRequestMs }),
        renderError: (problem) => {
          // One line per connection problem (info: hostile clients must not flood warnings).
          metrics.framingErrors.inc({ reason: problem.code });
          log.info('connection problem', { code: problem.code, reason: problem.message });
          return renderRequestError(problem);
        },
        isCompleteDocument,
      },
    );
    const address = await listener.listen().catch((error: NodeJS.ErrnoException) => {
      throw listenError(config, error);
    });
    opened.push(() => listener.close(config.shutdownTimeoutMs));
    log.info('exchange server listening', {
      host: address.address,
      port: address.port,
      replyFraming: config.replyFraming,
    });

    // Health checks use a connection of their own: behind busy request traffic the
    // shared pool would make a healthy database look unreachable.
    const healthPool =
      config.metricsPort !== null && (deps.operationsPort ?? true)
        ? createPool({ databaseUrl, maxConnections: 1, connectionTimeoutMs: 1_000 })
        : null;
    if (healthPool !== null) opened.push(() => healthPool.end());
    const operations =
      healthPool !== null
        ? await startOperationsPort({
            port: config.metricsPort as number,
            host: config.metricsHost,
            databaseUrl,
            adminToken: config.adminToken,
            metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
            health: async () => ({
              // Started after the listener: this process listens.
              server: 'listening' as const,
              postgres: (await reachable(() => healthPool.query('SELECT 1'))) ? 'ok' : 'unreachable',
              redis:
                cache === null
                  ? 'off'
                  : (await reachable(() => (cache as RedisReadCache).ping()))
                    ? 'ok'
                    : 'unreachable',
            }),
          })
        : null;

    return {
      port: address.port,
      pool,
      store: database,
      requestStore: store,
      listener,
      cache,
      operations,
      close: async () => {
        // The operations port closes alongside the listener, which drains requests in flight;
        // the pools and the cache go only after both.
        const closingOperations = operations?.close();
        await listener.close(config.shutdownTimeoutMs);
        await closingOperations;
        await pool.end();
        await statusReadPool.end();
        await healthPool?.end();
        await cache?.close();
      },
    };
  } catch (error) {
    await release();
    throw error;
  }
}
