/** The PostgreSQL connection pool: every session defaults to SERIALIZABLE unless told otherwise. */
import pg from 'pg';

export type PoolOptions = {
  databaseUrl: string;
  maxConnections: number;
  /** How long to wait for a connection (default 10 s). */
  connectionTimeoutMs?: number;
  /** Called for errors on idle clients (e.g. the server restarted); the pool replaces them. */
  onIdleError?: (error: Error) => void;
  /**
   * Isolation of statements outside an explicit BEGIN (default serializable). Read committed
   * only for reads that need no more than one statement's snapshot: see ExchangeStore's status reads.
   */
  isolation?: 'serializable' | 'read committed';
};

export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.maxConnections,
    // Statements outside an explicit BEGIN are their own SERIALIZABLE transaction,
    // so a single-statement operation costs one round trip and keeps the isolation.
    // synchronous_commit=on: an acknowledged order must survive a crash, whatever the server default.
    // jit=off: every statement here is small, and a plan whose cost passes jit_above_cost
    // (any scan with enable_seqscan off counts as very costly) would compile for tens of ms.
    options: `-c default_transaction_isolation=${(options.isolation ?? 'serializable').replace(' ', '\\ ')} -c synchronous_commit=on -c jit=off`,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its connection must not crash the process.
  pool.on('error', (error) => options.onIdleError?.(error));
  return pool;
}
