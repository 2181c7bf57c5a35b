/** The PostgreSQL connection pool: every session defaults to SERIALIZABLE unless told otherwise. */
import pg from 'pg';

import { PoolWarmer } from './pool-warmer.js';

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
  /**
   * Connections opened at start and kept open, replaced in the background when one fails
   * (default 0: all on demand). See pool-warmer.ts.
   */
  minConnections?: number;
  /** Called when replacing a kept connection failed (it is retried). */
  onWarmFailure?: (error: Error) => void;
};

const warmers = new WeakMap<pg.Pool, PoolWarmer>();

/** Settles once a pool made with minConnections has them open (at once for any other pool). */
export function poolWarmed(pool: pg.Pool): Promise<void> {
  return warmers.get(pool)?.fill() ?? Promise.resolve();
}

export function createPool(options: PoolOptions): pg.Pool {
  const min = Math.min(options.minConnections ?? 0, options.maxConnections);
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.maxConnections,
    min,
    // Statements outside an explicit BEGIN are their own SERIALIZABLE transaction,
    // so a single-statement operation costs one round trip and keeps the isolation.
    // synchronous_commit=on: an acknowledged order must survive a crash, whatever the server default.
    // jit=off: every statement here is small, and a plan whose cost passes jit_above_cost
    // (any scan with enable_seqscan off counts as very costly) would compile for tens of ms.
    options: `-c default_transaction_isolation=${(options.isolation ?? 'serializable').replace(' ', '\\ ')} -c synchronous_commit=on -c jit=off`,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 10_000,
    idleTimeoutMillis: 30_000,
    // Kept connections (minConnections) may sit idle for as long as the exchange is quiet: a
    // NAT or firewall that drops idle flows would otherwise leave the next batch waiting on a
    // dead connection until the kernel gave up on it (minutes).
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  // An idle client losing its connection must not crash the process.
  pool.on('error', (error) => options.onIdleError?.(error));
  if (min > 0) warmers.set(pool, new PoolWarmer(pool, min, options.onWarmFailure));
  return pool;
}

/** A checked-out client's state as the work sees it. */
export type CheckedOutConnection = {
  /** False once the connection failed, or the work said it cannot be reused. */
  readonly healthy: boolean;
  /** The client must not go back to the pool (say, its ROLLBACK failed). */
  discard(): void;
};

/** A client checked out of the pool, with the error listener that marks it broken. */
type Checkout = { client: pg.PoolClient; healthy: boolean; onError: () => void };

/**
 * A checked-out client has no pool error listener: a connection dying between two queries
 * would otherwise be an uncaught 'error' event and kill the process. So it gets one of ours.
 */
async function checkOut(pool: pg.Pool): Promise<Checkout> {
  const client = await pool.connect();
  const checkout: Checkout = {
    client,
    healthy: true,
    onError: () => {
      checkout.healthy = false;
    },
  };
  client.on('error', checkout.onError);
  return checkout;
}

/**
 * A client whose connection failed, or that the work discarded, is destroyed rather than
 * returned to the pool; it keeps the listener, since a dying connection can report more
 * errors after release.
 */
function giveBack(checkout: Checkout): void {
  if (checkout.healthy) checkout.client.off('error', checkout.onError);
  checkout.client.release(!checkout.healthy);
}

function runOn<T>(
  checkout: Checkout,
  work: (client: pg.PoolClient, connection: CheckedOutConnection) => Promise<T>,
): Promise<T> {
  return work(checkout.client, {
    get healthy() {
      return checkout.healthy;
    },
    discard() {
      checkout.healthy = false;
    },
  });
}

/** Runs `work` on a client checked out of the pool, and gives it back. */
export async function withPoolClient<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient, connection: CheckedOutConnection) => Promise<T>,
): Promise<T> {
  const checkout = await checkOut(pool);
  try {
    return await runOn(checkout, work);
  } finally {
    giveBack(checkout);
  }
}

/**
 * Like withPoolClient, for work that runs back to back (a write lane's batches): a healthy
 * client is kept from one run to the next, and given back to the pool once a turn of the
 * event loop passes without one. The pool hands an idle client over on a later tick, after
 * every callback already queued; under load those are the last batch's replies being
 * rendered and written, so each batch reached PostgreSQL about 0.1 ms later, with the
 * write lock idle meanwhile.
 */
export class BackToBackClient {
  private kept: Checkout | null = null;

  constructor(private readonly pool: pg.Pool) {}

  async run<T>(work: (client: pg.PoolClient, connection: CheckedOutConnection) => Promise<T>): Promise<T> {
    const kept = this.kept;
    this.kept = null;
    if (kept && !kept.healthy) giveBack(kept);
    const checkout = kept?.healthy ? kept : await checkOut(this.pool);
    try {
      return await runOn(checkout, work);
    } finally {
      if (checkout.healthy) this.keep(checkout);
      else giveBack(checkout);
    }
  }

  private keep(checkout: Checkout): void {
    // Runs that overlapped (not the lane's way, but possible) each end here: one is kept.
    if (this.kept) giveBack(this.kept);
    this.kept = checkout;
    setImmediate(() => {
      if (this.kept !== checkout) return;
      this.kept = null;
      giveBack(checkout);
    });
  }
}
