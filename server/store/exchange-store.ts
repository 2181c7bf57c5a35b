/**
 * The storage interface handlers call, and its PostgreSQL implementation.
 * Each method is one atomic SERIALIZABLE transaction (retried on serialization
 * failure); on the order path, one round trip under the write lock, then a wait
 * for the WAL flush (durability.ts): matching lives in schema/002_matching.sql.
 * Decimals cross this boundary as strings.
 */
import pg from 'pg';
import { BatchQueue } from './batch-queue.js';
import { metrics } from '../observability/metrics.js';
import { DEFAULT_RETRY_POLICY, isRetryable, withRetry, type RetryCounters, type RetryPolicy } from './retry.js';
import { DurabilityBarrier, WAL_MARK_COLUMNS, walFlusher, walMarkOf, type WalMark, type WalMarkRow } from './durability.js';
import type { ErrorCode } from '../errors.js';

export type Fill = { shares: string; price: string; time: string };
export type OrderStatus = {
  /** Unfilled shares still open (positive decimal, or "0"). */
  openShares: string;
  canceled: { shares: string; time: string } | null;
  /** Oldest first. */
  fills: Fill[];
};
/** Why the matching functions (schema/002_matching.sql) refuse a write: codes of server/errors.ts. */
export type OrderRejection = Extract<ErrorCode, 'unknown_account' | 'unknown_symbol' | 'insufficient_funds' | 'insufficient_shares'>;
export type CancelRejection = Extract<ErrorCode, 'unknown_order' | 'nothing_open'>;
export type AddSharesRejection = Extract<ErrorCode, 'unknown_account' | 'unknown_symbol'>;
/** fills: how many resting orders the new order executed against at once. */
export type PlaceOrderResult = { opened: true; orderId: string; fills: number } | { opened: false; rejection: OrderRejection };
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

/**
 * Where a write batch's WAL flush happens: 'auto' under the write lock (one round trip)
 * unless other writers wait for the lock, 'after-lock' never under it.
 */
export type WriteFlush = 'auto' | 'after-lock';

/** Bounds the memory of accounts known to exist (about 100 bytes each). */
const MAX_KNOWN_ACCOUNTS = 1_000_000;

/** Most writes one transaction carries (group commit of the queue). */
const MAX_WRITES_PER_TRANSACTION = 64;
/** Most order-status lookups one statement carries. */
const MAX_READS_PER_STATEMENT = 256;

type WriteRequest =
  | { kind: 'order'; accountId: string; sym: string; amount: string; limit: string }
  | { kind: 'cancel'; accountId: string; orderId: string };
/** wal: what the reply must wait for before it may be sent (see durability.ts). */
type WriteResult = ({ kind: 'order'; result: PlaceOrderResult } | { kind: 'cancel'; result: CancelResult }) & { wal: WalMark };
type WriteRow = {
  order_id: string | null; rejection: string | null; fill_count: number | null;
  outcome: string | null; shares_canceled: string | null; time_canceled: string | null;
  /** [shares, price, time] per fill, oldest first. */
  fills: Array<[string, string, string]> | null;
};

/** A PostgreSQL array literal ({"a","b",NULL}) as an SQL string literal. */
function arrayLiteral(values: Array<string | null>): string {
  const elements = values.map((value) => (value === null ? 'NULL' : `"${value.replace(/[\\"]/g, (character) => `\\${character}`)}"`));
  return pg.escapeLiteral(`{${elements.join(',')}}`);
}

/**
 * The batch statement, prepared once per connection: each batch then sends only its
 * values (as array literals), not a statement PostgreSQL must parse and plan anew.
 */
const PREPARE_APPLY_BATCH = `PREPARE apply_batch(text[], text[], text[], numeric[], numeric[], bigint[]) AS
SELECT w.order_id, w.rejection, w.fill_count, w.outcome, w.shares_canceled, w.time_canceled, w.fills
  FROM apply_writes($1, $2, $3, $4, $5, $6)
       WITH ORDINALITY AS w(order_id, rejection, fill_count, outcome, shares_canceled, time_canceled, fills, n)
 ORDER BY w.n`;

/**
 * The one place SQL's answers become codes: the matching functions return codes of
 * server/errors.ts, and one outside what the caller expects is a bug, never a reply.
 */
function codeFromSql<Code extends ErrorCode>(value: string | null, expected: readonly Code[]): Code {
  const code = expected.find((each) => each === value);
  if (code === undefined) throw new Error(`schema/002_matching.sql returned ${JSON.stringify(value)}, not one of ${expected.join(', ')}`);
  return code;
}
const ORDER_REJECTIONS: readonly OrderRejection[] = ['unknown_account', 'unknown_symbol', 'insufficient_funds', 'insufficient_shares'];
const CANCEL_REJECTIONS: readonly CancelRejection[] = ['unknown_order', 'nothing_open'];
const ADD_SHARES_REJECTIONS: readonly AddSharesRejection[] = ['unknown_account', 'unknown_symbol'];

function writeResult(request: WriteRequest, row: WriteRow | undefined, wal: WalMark): WriteResult {
  if (!row) throw new Error('apply_writes returned too few rows');
  if (request.kind === 'order') {
    return {
      kind: 'order',
      result: row.order_id
        ? { opened: true, orderId: row.order_id, fills: row.fill_count ?? 0 }
        : { opened: false, rejection: codeFromSql(row.rejection, ORDER_REJECTIONS) },
      wal,
    };
  }
  if (row.outcome === 'canceled' && row.shares_canceled !== null && row.time_canceled !== null) {
    const fills = (row.fills ?? []).map(([shares, price, time]) => ({ shares, price, time }));
    return { kind: 'cancel', result: { outcome: 'canceled', shares: row.shares_canceled, time: row.time_canceled, fills }, wal };
  }
  return { kind: 'cancel', result: { outcome: codeFromSql(row.outcome, CANCEL_REJECTIONS) }, wal };
}

/** The prepared batch statement is gone (26000) or its plan no longer fits (0A000: a migration changed apply_writes). */
function isPreparedStatementError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '26000' || code === '0A000';
}

/**
 * An error PostgreSQL raised while executing a statement of ours (data,
 * integrity or PL/pgSQL errors, or a prepared statement to make again): the
 * transaction rolled back, nothing committed. Connection failures carry no
 * such code, or a class of their own.
 */
function isStatementError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (typeof code === 'string' && /^(22|23|P0)/.test(code)) || isPreparedStatementError(error);
}

type FillRow = { shares: string | null; price: string | null; executed_at: string | null };
type StatusLookup = { accountId: string; orderId: string };
/**
 * One row per fill (one with null fill columns for an order without fills); n is the lookup's
 * position, from 1 (null on the one row of a batch that found no order).
 */
type StatusRow = FillRow & WalMarkRow & { n: number | null; open_shares: string; canceled_shares: string | null; canceled_at: string | null };

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
    canceled: first.canceled_shares !== null && first.canceled_at !== null
      ? { shares: first.canceled_shares, time: first.canceled_at }
      : null,
    fills: fillsOf(rows),
  };
}

export class PostgresExchangeStore implements ExchangeStore {
  readonly retryCounters: RetryCounters = { retries: 0, exhausted: 0 };
  private readonly knownAccounts = new Set<string>();
  /** Connections that have apply_batch prepared (a prepared statement lives as long as its session). */
  private readonly preparedClients = new WeakSet<pg.PoolClient>();
  private readonly writes = new BatchQueue<WriteRequest, WriteResult>((batch) => this.applyWrites(batch), MAX_WRITES_PER_TRANSACTION);
  private readonly statusReads = new BatchQueue<StatusLookup, { status: OrderStatus | null; wal: WalMark }>(
    (batch) => this.readStatuses(batch), MAX_READS_PER_STATEMENT);
  /** Replies wait here until what they reveal is on disk. */
  readonly durability: DurabilityBarrier;

  constructor(
    private readonly pool: pg.Pool,
    private readonly retryPolicy: RetryPolicy = DEFAULT_RETRY_POLICY,
    private readonly writeFlush: WriteFlush = 'auto',
    /**
     * Where order-status reads run: a pool whose sessions default to READ COMMITTED
     * (createPool's isolation), or the main pool. Either is correct, see readStatuses.
     */
    private readonly statusReadPool: pg.Pool = pool,
  ) {
    this.durability = new DurabilityBarrier(walFlusher(pool));
  }

  /** One statement = one implicit SERIALIZABLE transaction (see pool.ts), retried as a whole. */
  private query<Row extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<Row>> {
    return withRetry(() => this.pool.query<Row>(sql, params), this.retryPolicy, this.retryCounters);
  }

  async instanceId(): Promise<string> {
    const result = await this.query<{ instance_id: string }>('SELECT instance_id FROM exchange_instance', []);
    const row = result.rows[0];
    if (!row) throw new Error('exchange_instance row missing: schema not applied');
    return row.instance_id;
  }

  async createAccount(accountId: string, balance: string): Promise<boolean> {
    const result = await this.query(
      'INSERT INTO accounts (id, balance) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id',
      [accountId, balance],
    );
    return result.rowCount === 1;
  }

  async ensureSymbol(sym: string): Promise<void> {
    await this.query('INSERT INTO symbols (sym) VALUES ($1) ON CONFLICT (sym) DO NOTHING', [sym]);
  }

  async addShares(accountId: string, sym: string, shares: string): Promise<AddSharesRejection | null> {
    const result = await this.query<{ problem: string | null }>(
      'SELECT add_shares($1, $2, $3) AS problem',
      [accountId, sym, shares],
    );
    const problem = result.rows[0]?.problem ?? null;
    return problem === null ? null : codeFromSql(problem, ADD_SHARES_REJECTIONS);
  }

  /**
   * Accounts are never deleted, so an account seen once exists for good: remembering
   * it saves every later <transactions> request a transaction of its own.
   */
  async accountExists(accountId: string): Promise<boolean> {
    if (this.knownAccounts.has(accountId)) return true;
    const result = await this.query('SELECT 1 FROM accounts WHERE id = $1', [accountId]);
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

  /** A batch of writes in one transaction; on an error inside one write, each on its own. */
  /**
   * The batch committed without waiting for its WAL flush, so the write lock is
   * never held across one: other processes' batches use the lock meanwhile. The
   * batch's replies wait for the flush here, inside this process's batch queue,
   * so writes that arrive meanwhile form the next batch (as large as when COMMIT
   * flushed: smaller batches cost more per order). A failed flush leaves the
   * outcome unknown, as a connection lost during COMMIT does.
   */
  private async applyWrites(batch: WriteRequest[]): Promise<Array<PromiseSettledResult<WriteResult>>> {
    const results = await this.applyWritesUnflushed(batch);
    for (const result of results) {
      if (result.status !== 'fulfilled') continue;
      // Positions only grow within a run: after the first, these waits return at once.
      try {
        await this.durability.waitFor(result.value.wal);
      } catch (reason) {
        return results.map((each) => (each.status === 'fulfilled' ? { status: 'rejected', reason } : each));
      }
    }
    return results;
  }

  private async applyWritesUnflushed(batch: WriteRequest[]): Promise<Array<PromiseSettledResult<WriteResult>>> {
    metrics.writeBatchSize.observe(batch.length);
    try {
      const { rows, wal } = await this.writeTransaction(batch);
      return batch.map((request, index) => ({ status: 'fulfilled', value: writeResult(request, rows[index], wal) }));
    } catch (error) {
      // An error raised inside one write rolled the whole batch back: nothing committed,
      // so each write runs again on its own and only the culprit fails. Any other failure
      // (a lost connection mid-COMMIT) may have committed: it is passed up, never retried.
      if (batch.length === 1 || !isStatementError(error)) throw error;
      const results: Array<PromiseSettledResult<WriteResult>> = [];
      for (const request of batch) {
        try {
          const { rows: [row], wal } = await this.writeTransaction([request]);
          results.push({ status: 'fulfilled', value: writeResult(request, row, wal) });
        } catch (reason) {
          results.push({ status: 'rejected', reason });
        }
      }
      return results;
    }
  }

  /**
   * BEGIN, LOCK TABLE, the batch and COMMIT as one simple-query message: one
   * round trip, and the write lock is held only while PostgreSQL works, never
   * across a network wait, nor, while other writers wait for it, across the WAL
   * flush (apply_writes then turns synchronous_commit off for this transaction;
   * the closing SELECT gives the WAL position the replies wait for, see
   * durability.ts). LOCK takes no snapshot, so the SERIALIZABLE snapshot
   * is taken only once no other writer (of any process) is running, and writers
   * never abort each other. Retried on 40001/40P01. (The simple protocol takes
   * no parameters: values are inlined as escaped literals, after the parser
   * already checked each against its strict format.)
   */
  private writeTransaction(batch: WriteRequest[]): Promise<{ rows: WriteRow[]; wal: WalMark }> {
    const column = (value: (request: WriteRequest) => string | null) => arrayLiteral(batch.map(value));
    // statement_timeout bounds how long a runaway batch can hold the write lock.
    const sql = `BEGIN ISOLATION LEVEL SERIALIZABLE;
SET LOCAL statement_timeout = '30s';
SET LOCAL synchronous_commit = ${this.writeFlush === 'after-lock' ? 'off' : 'on'};
LOCK TABLE exchange_write_lock IN EXCLUSIVE MODE;
EXECUTE apply_batch(${column((request) => request.kind)}, ${column((request) => request.accountId)},
  ${column((request) => (request.kind === 'order' ? request.sym : null))},
  ${column((request) => (request.kind === 'order' ? request.amount : null))},
  ${column((request) => (request.kind === 'order' ? request.limit : null))},
  ${column((request) => (request.kind === 'cancel' ? request.orderId : null))});
COMMIT;
SELECT ${WAL_MARK_COLUMNS};`;
    const attempt = () => withRetry(async () => {
      const client = await this.pool.connect();
      let healthy = true;
      // A checked-out client has no pool error listener: a connection dying between two
      // of our queries would otherwise be an uncaught 'error' event and kill the process.
      const onError = () => {
        healthy = false;
      };
      client.on('error', onError);
      try {
        if (!this.preparedClients.has(client)) {
          // Its own round trip, before the batch's message, so the lock is not held meanwhile.
          await client.query(PREPARE_APPLY_BATCH);
          this.preparedClients.add(client);
        }
        const results = (await client.query(sql)) as unknown as Array<pg.QueryResult>;
        const selected = results[4] as pg.QueryResult<WriteRow> | undefined;
        const mark = (results[6] as pg.QueryResult<WalMarkRow> | undefined)?.rows[0];
        if (!selected || !mark) throw new Error('the write transaction returned no batch result');
        return { rows: selected.rows, wal: walMarkOf(mark) };
      } catch (error) {
        // A statement that failed left the transaction open and aborted (the rest of the
        // message was skipped): roll it back. A lost connection is discarded instead.
        // A prepared statement that failed is made again on the next use.
        if (isPreparedStatementError(error)) this.preparedClients.delete(client);
        if (isRetryable(error) || isStatementError(error)) {
          // A client whose ROLLBACK failed may still be inside the aborted transaction.
          await client.query('ROLLBACK').catch(() => {
            healthy = false;
          });
          // A plan that no longer fits (0A000) leaves the statement in place: drop it so it can be made again.
          if (healthy && isPreparedStatementError(error)) await client.query('DEALLOCATE apply_batch').catch(() => undefined);
        } else {
          healthy = false;
        }
        throw error;
      } finally {
        // A client whose connection failed is discarded, not returned to the pool; it keeps
        // our listener, since a dying connection can report more errors after release.
        if (healthy) client.off('error', onError);
        client.release(!healthy);
      }
    }, this.retryPolicy, this.retryCounters);
    // A connection that lost the prepared statement (nothing committed) prepares it again, once.
    return attempt().catch((error: unknown) => {
      if (!isPreparedStatementError(error)) throw error;
      return attempt();
    });
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
  private async readStatuses(batch: StatusLookup[]): Promise<Array<PromiseSettledResult<{ status: OrderStatus | null; wal: WalMark }>>> {
    metrics.readBatchSize.observe(batch.length);
    const result = await withRetry(() => this.statusReadPool.query<StatusRow>({
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
    }), this.retryPolicy, this.retryCounters);
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
    return batch.map((_, index) => ({ status: 'fulfilled', value: { status: statusOf(rowsByLookup.get(index + 1)), wal } }));
  }
}
