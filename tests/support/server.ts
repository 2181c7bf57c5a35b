/** A real exchange server in this process, on a random port, over its own database. */
import type pg from 'pg';
import { startExchangeServer } from '../../server/exchange-server.js';
import type { ExchangeListener } from '../../server/net/listener.js';
import type { ReplyFraming } from '../../server/protocol/framing.js';
import type { RedisReadCache } from '../../server/cache/read-cache.js';
import {
  DEFAULT_WRITE_TIMEOUT_MS,
  type PostgresExchangeStore,
  type WriteLimits,
} from '../../server/store/exchange-store.js';
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
  /** Connections each pool opens at start and keeps (default 0: on demand, as most tests need). */
  poolMin?: number;
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

/** Test settings where they differ from production (server/config.ts): small pool, short timeouts. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const ownsDatabase = options.database === undefined;
  const database = options.database ?? (await createTestDatabase());
  const server = await startExchangeServer(
    {
      host: '127.0.0.1',
      port: 0,
      databaseUrl: options.poolUrl ?? database.url,
      redisUrl: options.redisUrl ?? null,
      replyFraming: options.framing ?? 'bare',
      maxRequestBytes: options.maxRequestBytes ?? 1024 * 1024,
      requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
      graceMs: options.graceMs ?? 100,
      maxConnections: options.maxConnections ?? 10_000,
      maxBufferedBytes: options.maxBufferedBytes ?? 64 * 1024 * 1024,
      dbPoolSize: options.poolSize ?? 10,
      dbPoolMin: options.poolMin ?? 0,
      writeFlush: 'auto',
      writeTimeoutMs: options.writeLimits?.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS,
      slowRequestMs: 1_000,
      cacheTtlSeconds: 600,
      cacheTimeoutMs: 200,
      metricsPort: null,
      metricsHost: '127.0.0.1',
      adminToken: null,
      shutdownTimeoutMs: 2_000,
    },
    {
      outcomeLookupMs: options.writeLimits?.outcomeLookupMs,
      // A connection lost under a test's proxy is expected there, not worth a warning.
      onIdleError: () => undefined,
    },
  ).catch(async (error: unknown) => {
    if (ownsDatabase) await database.drop();
    throw error;
  });
  return {
    port: server.port,
    pool: server.pool,
    store: server.store,
    listener: server.listener,
    cache: server.cache,
    database,
    close: async () => {
      await server.close();
      if (ownsDatabase) await database.drop();
    },
  };
}
