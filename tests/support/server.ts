/** A real exchange server in this process, on a random port, over its own database. */
import type pg from 'pg';
import { createRequestProcessor } from '../../server/app.js';
import { ExchangeListener } from '../../server/net/listener.js';
import { isCompleteDocument } from '../../server/protocol/parse-request.js';
import type { ReplyFraming } from '../../server/protocol/framing.js';
import { renderRequestError } from '../../server/protocol/render-reply.js';
import { CachedExchangeStore } from '../../server/cache/cached-store.js';
import { RedisReadCache } from '../../server/cache/read-cache.js';
import { PostgresExchangeStore, type ExchangeStore, type WriteLimits } from '../../server/store/exchange-store.js';
import { applySchema } from '../../server/store/migrate.js';
import { createPool } from '../../server/store/pool.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export type TestServer = {
  port: number;
  pool: pg.Pool;
  store: PostgresExchangeStore;
  /** The TCP listener (for its live connection count). */
  listener: ExchangeListener;
  /** The Redis cache, when redisUrl was given. */
  cache: RedisReadCache | null;
  database: TestDatabase;
  close: () => Promise<void>;
};

export type TestServerOptions = {
  framing?: ReplyFraming;
  maxRequestBytes?: number;
  requestTimeoutMs?: number;
  idleTimeoutMs?: number;
  graceMs?: number;
  poolSize?: number;
  /** Reuse a database (several servers on one database, like several processes). */
  database?: TestDatabase;
  /** Put the Redis read-through cache in front of the store. */
  redisUrl?: string;
  maxConnections?: number;
  maxBufferedBytes?: number;
  /** The server's pool connects here instead of to the database (a proxy in front of it). */
  poolUrl?: string;
  /** The store's limits (write time limit, outcome lookup deadline). */
  writeLimits?: WriteLimits;
};

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const ownsDatabase = options.database === undefined;
  const database = options.database ?? (await createTestDatabase());
  const pool = createPool({ databaseUrl: options.poolUrl ?? database.url, maxConnections: options.poolSize ?? 10 });
  // A connection lost under a test's proxy must not crash the test process.
  pool.on('error', () => undefined);
  await applySchema(pool);
  const statusReadPool = createPool({
    databaseUrl: options.poolUrl ?? database.url,
    maxConnections: 1,
    isolation: 'read committed',
  });
  statusReadPool.on('error', () => undefined);
  const store = new PostgresExchangeStore(pool, undefined, undefined, statusReadPool, options.writeLimits);
  const cache = options.redisUrl
    ? new RedisReadCache({ url: options.redisUrl, ttlSeconds: 600, commandTimeoutMs: 200 })
    : null;
  const handlerStore: ExchangeStore = cache ? await CachedExchangeStore.create(store, cache, pool) : store;
  const listener = new ExchangeListener(
    {
      host: '127.0.0.1',
      port: 0,
      maxConnections: options.maxConnections ?? 10_000,
      maxBufferedBytes: options.maxBufferedBytes ?? 64 * 1024 * 1024,
      framing: options.framing ?? 'bare',
      maxRequestBytes: options.maxRequestBytes ?? 1024 * 1024,
      requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
      graceMs: options.graceMs ?? 100,
      maxQueuedRequests: 64,
    },
    { processRequest: createRequestProcessor(handlerStore), renderError: renderRequestError, isCompleteDocument },
  );
  const address = await listener.listen();
  return {
    port: address.port,
    pool,
    store,
    listener,
    cache,
    database,
    close: async () => {
      await listener.close(2_000);
      await pool.end();
      await statusReadPool.end();
      await cache?.close();
      if (ownsDatabase) await database.drop();
    },
  };
}
