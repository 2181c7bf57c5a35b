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

/** A checked-out client's state as the work sees it. */
export type CheckedOutConnection = {
  /** False once the connection failed, or the work said it cannot be reused. */
  readonly healthy: boolean;
  /** The client must not go back to the pool (say, its ROLLBACK failed). */
  discard(): void;
};

/**
 * Runs `work` on a client checked out of the pool. A checked-out client has no pool error
 * listener: a connection dying between two queries would otherwise be an uncaught 'error'
 * event and kill the process. A client whose connection failed, or that the work discarded,
 * is destroyed rather than returned to the pool; it keeps the listener, since a dying
 * connection can report more errors after release.
 */
export async function withPoolClient<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient, connection: CheckedOutConnection) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let healthy = true;
  const onError = () => {
    healthy = false;
  };
  client.on('error', onError);
  const connection: CheckedOutConnection = {
    get healthy() {
      return healthy;
    },
    discard() {
      healthy = false;
    },
  };
  try {
    return await work(client, connection);
  } finally {
    if (healthy) client.off('error', onError);
    client.release(!healthy);
  }
}
