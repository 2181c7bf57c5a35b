/**
 * The storage interface handlers call, and its PostgreSQL implementation.
 * Each method is one atomic SERIALIZABLE transaction (retried on serialization
 * failure). Orders and cancels go to a write lane (write-lane.ts: one round trip
 * under the write lock, then a wait for the WAL flush), this process's own or the
 * primary's; matching lives in schema/002_matching.sql. Decimals cross this
 * boundary as strings.
 */
import type pg from 'pg';
import { BatchQueue } from './batch-queue.js';
import { metrics } from '../observability/metrics.js';
import {
  DEFAULT_RETRY_POLICY,
  isConnectionFailure,
  withReconnects,
  withRetry,
  type RetryCounters,
  type RetryPolicy,
} from './retry.js';
import { awaitBatchOutcome, newBatchToken } from './write-outcome.js';
import { log } from '../log.js';
import {
  DurabilityBarrier,
  WAL_MARK_COLUMNS,
  type DurabilityWaiter,
  walFlusher,
  walMarkOf,
  type WalMark,
  type WalMarkRow,
} from './durability.js';
import type { ErrorCode } from '../errors.js';
import { ADD_SHARES_REJECTIONS, codeFromSql } from './sql-codes.js';
import {
  DEFAULT_OUTCOME_LOOKUP_MS,
  DEFAULT_WRITE_TIMEOUT_MS,
  WriteLane,
  WriteNotAppliedError,
  type WriteFlush,
  type WriteLimits,
  type WriteSubmitter,
} from './write-lane.js';

export { DEFAULT_WRITE_TIMEOUT_MS, WriteNotAppliedError, WriteTooLongError } from './write-lane.js';
export type { WriteFlush, WriteLimits } from './write-lane.js';

export type Fill = { shares: string; price: string; time: string };
export type OrderStatus = {
  /** Unfilled shares still open (positive decimal, or "0"). */
  openShares: string;
  canceled: { shares: string; time: string } | null;
  /** Oldest first. */
  fills: Fill[];
};
/** Why the matching functions (schema/002_matching.sql) refuse a write: codes of server/errors.ts. */
export type OrderRejection = Extract<
  ErrorCode,
  'unknown_account' | 'unknown_symbol' | 'insufficient_funds' | 'insufficient_shares'
>;
export type CancelRejection = Extract<ErrorCode, 'unknown_order' | 'nothing_open'>;
export type AddSharesRejection = Extract<ErrorCode, 'unknown_account' | 'unknown_symbol'>;
/** fills: how many resting orders the new order executed against at once. */
export type PlaceOrderResult =
  | { opened: true; orderId: string; fills: number }
  | { opened: false; rejection: OrderRejection };
export type CancelResult =
  | { outcome: 'canceled'; shares: string; time: string; fills: Fill[] }
  | { outcome: CancelRejection };

export interface ExchangeStore {
  /** Names this database instance (new after a reset); caches key on it. */
  instanceId(): Promise<string>;
  /** false when the account already exists. */
  createAccount(accountId: string, balance: string): Promise<boolean>;
  ensureSymbol(sym: string): Promise<void>;
  /** null on success, else why not (the account or the symbol does not exist). */
  addShares(accountId: string, sym: string, shares: string): Promise<AddSharesRejection | null>;
  accountExists(accountId: string): Promise<boolean>;
  placeOrder(accountId: string, sym: string, amount: string, limit: string): Promise<PlaceOrderResult>;
  /** null when the order does not exist or belongs to another account. */
  orderStatus(accountId: string, orderId: string): Promise<OrderStatus | null>;
  cancelOrder(accountId: string, orderId: string): Promise<CancelResult>;
}

/** Bounds the memory of accounts known to exist (about 100 bytes each). */
const MAX_KNOWN_ACCOUNTS = 1_000_000;

/** Most order-status lookups one statement carries. */
const MAX_READS_PER_STATEMENT = 256;

type FillRow = { shares: string | null; price: string | null; executed_at: string | null };
type StatusLookup = { accountId: string; orderId: string };
/**
 * One row per fill (one with null fill columns for an order without fills); n is the lookup's
 * position, from 1 (null on the one row of a batch that found no order).
 */
type StatusRow = FillRow &
  WalMarkRow & { n: number | null; open_shares: string; canceled_shares: string | null; canceled_at: string | null };

function fillsOf(rows: FillRow[]): Fill[] {
  const fills: Fill[] = [];
  for (const row of rows) {
    if (row.shares !== null && row.price !== null && row.executed_at !== null) {
      fills.push({ shares: row.shares, price: row.price, time: row.executed_at });
    }
  }
  return fills;
}

/** null when the lookup matched no order of that account. */
function statusOf(rows: StatusRow[] | undefined): OrderStatus | null {
  const first = rows?.[0];
  if (!rows || !first) return null;
  return {
    openShares: first.open_shares,
    canceled:
      first.canceled_shares !== null && first.canceled_at !== null
        ? { shares: first.canceled_shares, time: first.canceled_at }
        : null,
    fills: fillsOf(rows),
  };
}

export class PostgresExchangeStore implements ExchangeStore {
  readonly retryCounters: RetryCounters = { retries: 0, exhausted: 0 };
  private readonly knownAccounts = new Set<string>();
  /** Orders and cancels: this process's own lane, or one shared by the host's workers. */
  private readonly writes: WriteSubmitter;
  private readonly statusReads = new BatchQueue<StatusLookup, { status: OrderStatus | null; wal: WalMark }>(
    (batch) => this.readStatuses(batch),
    MAX_READS_PER_STATEMENT,
  );
  /** Status replies wait here until what they reveal is on disk. */
  private readonly durability: DurabilityWaiter;
  private readonly outcomeLookupMs: number;

  constructor(
    private readonly pool: pg.Pool,
    private readonly retryPolicy: RetryPolicy = DEFAULT_RETRY_POLICY,
    writeFlush: WriteFlush = 'auto',
    /**
     * Where order-status reads run: a pool whose sessions default to READ COMMITTED
     * (createPool's isolation), or the main pool. Either is correct, see readStatuses.
     */
    private readonly statusReadPool: pg.Pool = pool,
    /**
     * writes: where orders and cancels go (default: a write lane of this process);
     * durability: where status reads wait for their flush (default: this process's barrier,
     * shared with its lane, so reads ride on the lane's commits).
     */
    limits: WriteLimits & { writes?: WriteSubmitter; durability?: DurabilityWaiter } = {},
  ) {
    const barrier = new DurabilityBarrier(walFlusher(pool));
    this.durability = limits.durability ?? barrier;
    this.outcomeLookupMs = limits.outcomeLookupMs ?? DEFAULT_OUTCOME_LOOKUP_MS;
    this.writes =
      limits.writes ??
      new WriteLane(pool, {
        retryPolicy,
        writeFlush,
        writeTimeoutMs: limits.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS,
        outcomeLookupMs: this.outcomeLookupMs,
        retryCounters: this.retryCounters,
        durability: barrier,
      });
  }

  /** One statement = one implicit SERIALIZABLE transaction (see pool.ts), retried as a whole. */
  private query<Row extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<Row>> {
    return withRetry(() => this.pool.query<Row>(sql, params), this.retryPolicy, this.retryCounters);
  }

  /** A read is made again after a lost connection, up to the lookup deadline. */
  private read<T>(attempt: () => Promise<T>): Promise<T> {
    return withReconnects(attempt, this.outcomeLookupMs, this.retryPolicy, this.retryCounters);
  }

  async instanceId(): Promise<string> {
    const result = await this.read(() =>
      this.pool.query<{ instance_id: string }>('SELECT instance_id FROM exchange_instance'),
    );
    const row = result.rows[0];
    if (!row) throw new Error('exchange_instance row missing: schema not applied');
    return row.instance_id;
  }

  /**
   * A write outside the lane (a <create> item), one statement whose last parameter is a
   * token under which it records its outcome (write_batches, as a write batch does), so
   * that a connection lost mid-COMMIT is settled by looking the token up
   * (write-outcome.ts): committed, the recorded outcome; not, and now never, it runs again
   * once, then "not applied". Only when PostgreSQL stays away past the lookup deadline is
   * the outcome unknown. An error of the statement itself rolled it back: thrown as it is.
   */
  private async recordedWrite(sql: string, params: unknown[]): Promise<string> {
    for (let reruns = 1; ; reruns--) {
      const token = newBatchToken();
      let recorded: string | null | undefined;
      try {
        recorded = (await this.query<{ outcome: string }>(sql, [...params, token])).rows[0]?.outcome;
      } catch (error) {
        if (!isConnectionFailure(error)) throw error;
        const looked = await awaitBatchOutcome(this.pool, token, this.outcomeLookupMs);
        log.warn('create failed; its outcome was looked up', {
          error: error instanceof Error ? error.message : String(error),
          outcome: looked === null ? 'unknown' : looked.committed ? 'committed' : 'not committed',
        });
        if (looked === null) throw error;
        if (!looked.committed) {
          if (reruns === 0) throw new WriteNotAppliedError(error);
          continue;
        }
        await this.durability.waitFor(looked.wal);
        recorded = looked.record.outcomes[0];
      }
      if (recorded === undefined || recorded === null) throw new Error('the write recorded no outcome');
      return recorded;
    }
  }

  async createAccount(accountId: string, balance: string): Promise<boolean> {
    const outcome = await this.recordedWrite(
      `WITH created AS (
         INSERT INTO accounts (id, balance) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id
       )
       INSERT INTO write_batches (token, order_ids, outcomes)
       SELECT $3, '{}', ARRAY[CASE WHEN EXISTS (SELECT FROM created) THEN 'created' ELSE 'exists' END]
       RETURNING outcomes[1] AS outcome`,
      [accountId, balance],
    );
    return outcome === 'created';
  }

  /** Made again after a lost connection, like a read: creating a symbol twice is creating it once. */
  async ensureSymbol(sym: string): Promise<void> {
    await withReconnects(
      () => this.pool.query('INSERT INTO symbols (sym) VALUES ($1) ON CONFLICT (sym) DO NOTHING', [sym]),
      this.outcomeLookupMs,
      this.retryPolicy,
      this.retryCounters,
    );
  }

  async addShares(accountId: string, sym: string, shares: string): Promise<AddSharesRejection | null> {
    const outcome = await this.recordedWrite(
      `WITH added AS MATERIALIZED (SELECT add_shares($1, $2, $3) AS problem)
       INSERT INTO write_batches (token, order_ids, outcomes)
       SELECT $4, '{}', ARRAY[coalesce(problem, 'added')] FROM added
       RETURNING outcomes[1] AS outcome`,
      [accountId, sym, shares],
    );
    return outcome === 'added' ? null : codeFromSql(outcome, ADD_SHARES_REJECTIONS);
  }

  /**
   * Accounts are never deleted, so an account seen once exists for good: remembering
   * it saves every later <transactions> request a transaction of its own.
   */
  async accountExists(accountId: string): Promise<boolean> {
    if (this.knownAccounts.has(accountId)) return true;
    const result = await this.read(() => this.pool.query('SELECT 1 FROM accounts WHERE id = $1', [accountId]));
    if (result.rowCount !== 1) return false;
    if (this.knownAccounts.size >= MAX_KNOWN_ACCOUNTS) this.knownAccounts.clear();
    this.knownAccounts.add(accountId);
    return true;
  }

  async placeOrder(accountId: string, sym: string, amount: string, limit: string): Promise<PlaceOrderResult> {
    const result = await this.writes.submit({ kind: 'order', accountId, sym, amount, limit });
    if (result.kind !== 'order') throw new Error('write queue returned the wrong result kind');
    return result.result;
  }

  async cancelOrder(accountId: string, orderId: string): Promise<CancelResult> {
    const result = await this.writes.submit({ kind: 'cancel', accountId, orderId });
    if (result.kind !== 'cancel') throw new Error('write queue returned the wrong result kind');
    return result.result;
  }

  /** What a read saw may be committed but not yet flushed (by any process): it waits too. */
  async orderStatus(accountId: string, orderId: string): Promise<OrderStatus | null> {
    const { status, wal } = await this.statusReads.submit({ accountId, orderId });
    await this.durability.waitFor(wal);
    return status;
  }

  /**
   * Every lookup queued meanwhile, as one statement (one implicit transaction,
   * one snapshot, one round trip), prepared once per connection. Each result is
   * what its lookup would have read alone at that snapshot.
   *
   * One statement's snapshot needs no SERIALIZABLE: orders and executions are
   * written only by write batches, which take turns on the write lock, so any
   * snapshot sees a prefix of their serial order. At READ COMMITTED the read
   * takes no predicate locks, which every later write would otherwise check.
   */
  private async readStatuses(
    batch: StatusLookup[],
  ): Promise<Array<PromiseSettledResult<{ status: OrderStatus | null; wal: WalMark }>>> {
    metrics.readBatchSize.observe(batch.length);
    const result = await this.read(() =>
      this.statusReadPool.query<StatusRow>({
        name: 'order-statuses',
        // order_statuses (schema/002_matching.sql) keeps one guarded plan per session.
        // The function returns rows in order; WITH ORDINALITY makes this statement promise it too.
        // The WAL mark, taken after the statement's snapshot, covers every commit it can see;
        // the outer join gives it a row even when no lookup found an order.
        text: `SELECT s.n, s.open_shares, s.canceled_shares, s.canceled_at, s.shares, s.price, s.executed_at, m.wal_needed, m.wal_flushed, m.wal_epoch
               FROM (SELECT ${WAL_MARK_COLUMNS}) m
               LEFT JOIN LATERAL order_statuses($1::text[], $2::bigint[]) WITH ORDINALITY
                    AS s(n, open_shares, canceled_shares, canceled_at, shares, price, executed_at, k) ON true
              ORDER BY s.k`,
        values: [batch.map((lookup) => lookup.accountId), batch.map((lookup) => lookup.orderId)],
      }),
    );
    const markRow = result.rows[0];
    if (!markRow) throw new Error('the status read returned no WAL position');
    const wal = walMarkOf(markRow);
    const rowsByLookup = new Map<number, StatusRow[]>();
    for (const row of result.rows) {
      if (row.n === null) continue;
      const rows = rowsByLookup.get(row.n);
      if (rows) rows.push(row);
      else rowsByLookup.set(row.n, [row]);
    }
    return batch.map((_, index) => ({
      status: 'fulfilled',
      value: { status: statusOf(rowsByLookup.get(index + 1)), wal },
    }));
  }
}
