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
import {
  DEFAULT_RETRY_POLICY,
  RetriesExhaustedError,
  isRetryable,
  withRetry,
  type RetryCounters,
  type RetryPolicy,
} from './retry.js';
import { OutcomePruner, awaitBatchOutcome, newBatchToken, type BatchRecord } from './write-outcome.js';
import { log } from '../log.js';
import {
  DurabilityBarrier,
  WAL_MARK_COLUMNS,
  walFlusher,
  walMarkOf,
  type WalMark,
  type WalMarkRow,
} from './durability.js';
import { ERROR_MESSAGES, type ErrorCode } from '../errors.js';
import { withPoolClient } from './pool.js';

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

/**
 * Where a write batch's WAL flush happens: 'auto' under the write lock (one round trip)
 * unless other writers wait for the lock, 'after-lock' never under it.
 */
export type WriteFlush = 'auto' | 'after-lock';

export type WriteLimits = {
  /** The longest one write batch may run under the write lock (PostgreSQL's statement_timeout). */
  writeTimeoutMs?: number;
  /** How long a batch whose outcome is in doubt is looked up before it is called unknown. */
  outcomeLookupMs?: number;
};
export const DEFAULT_WRITE_TIMEOUT_MS = 5_000;
/** Well inside the time its record is kept (write-outcome.ts: OUTCOME_RETENTION_MS). */
const DEFAULT_OUTCOME_LOOKUP_MS = 30_000;

/** A write that did not finish within the write time limit: rolled back, nothing changed. */
export class WriteTooLongError extends Error {
  constructor(readonly limitMs: number) {
    super(
      `not applied: it took longer than the ${limitMs} ms one write may hold the exchange (an order crossing too many resting orders); nothing was changed`,
    );
    this.name = 'WriteTooLongError';
  }
}

/** A write whose transaction failed and is known never to commit: nothing changed, safe to send again. */
export class WriteNotAppliedError extends Error {
  constructor(readonly failure: unknown) {
    super(ERROR_MESSAGES.write_not_applied);
    this.name = 'WriteNotAppliedError';
  }
}

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
type WriteResult = ({ kind: 'order'; result: PlaceOrderResult } | { kind: 'cancel'; result: CancelResult }) & {
  wal: WalMark;
};
type WriteRow = {
  order_id: string | null;
  rejection: string | null;
  fill_count: number | null;
  outcome: string | null;
  shares_canceled: string | null;
  time_canceled: string | null;
  /** [shares, price, time] per fill, oldest first. */
  fills: Array<[string, string, string]> | null;
};

/** A PostgreSQL array literal ({"a","b",NULL}) as an SQL string literal. */
function arrayLiteral(values: Array<string | null>): string {
  const elements = values.map((value) =>
    value === null ? 'NULL' : `"${value.replace(/[\\"]/g, (character) => `\\${character}`)}"`,
  );
  return pg.escapeLiteral(`{${elements.join(',')}}`);
}

/**
 * The batch statement, prepared once per connection: each batch then sends only its
 * values (as array literals), not a statement PostgreSQL must parse and plan anew. The
 * same statement records the batch's results under its token (write-outcome.ts): one
 * row, no extra statement or round trip under the write lock.
 */
const PREPARE_APPLY_BATCH = `PREPARE apply_batch(uuid, text[], text[], text[], numeric[], numeric[], bigint[]) AS
WITH w AS MATERIALIZED (
  SELECT w.order_id, w.rejection, w.fill_count, w.outcome, w.shares_canceled, w.time_canceled, w.fills, w.n
    FROM apply_writes($2, $3, $4, $5, $6, $7)
         WITH ORDINALITY AS w(order_id, rejection, fill_count, outcome, shares_canceled, time_canceled, fills, n)
), recorded AS (
  INSERT INTO write_batches (token, order_ids, outcomes)
  SELECT $1, array_agg(w.order_id ORDER BY w.n), array_agg(coalesce(w.rejection, w.outcome) ORDER BY w.n) FROM w
)
SELECT w.order_id, w.rejection, w.fill_count, w.outcome, w.shares_canceled, w.time_canceled, w.fills
  FROM w ORDER BY w.n`;

/**
 * The one place SQL's answers become codes: the matching functions return codes of
 * server/errors.ts, and one outside what the caller expects is a bug, never a reply.
 */
function codeFromSql<Code extends ErrorCode>(value: string | null, expected: readonly Code[]): Code {
  const code = expected.find((each) => each === value);
  if (code === undefined)
    throw new Error(`schema/002_matching.sql returned ${JSON.stringify(value)}, not one of ${expected.join(', ')}`);
  return code;
}
const ORDER_REJECTIONS: readonly OrderRejection[] = [
  'unknown_account',
  'unknown_symbol',
  'insufficient_funds',
  'insufficient_shares',
];
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
    return {
      kind: 'cancel',
      result: { outcome: 'canceled', shares: row.shares_canceled, time: row.time_canceled, fills },
      wal,
    };
  }
  return { kind: 'cancel', result: { outcome: codeFromSql(row.outcome, CANCEL_REJECTIONS) }, wal };
}

/**
 * The connection failed or PostgreSQL is going away or not yet accepting (class 08,
 * 57P01-57P03), or the pool could not connect: no SQLSTATE of a statement's own.
 */
function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === undefined || code === null) return error instanceof Error && !(error instanceof RetriesExhaustedError);
  return typeof code === 'string' && (/^(08|57P0[123])/.test(code) || /^E[A-Z]+$/.test(code));
}

/** 57014: the statement timeout fired (or someone canceled the statement); nothing committed. */
function isQueryCanceled(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === '57014';
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
  /** Connections that have apply_batch prepared (a prepared statement lives as long as its session). */
  private readonly preparedClients = new WeakSet<pg.PoolClient>();
  private readonly writes = new BatchQueue<WriteRequest, WriteResult>(
    (batch) => this.applyWrites(batch),
    MAX_WRITES_PER_TRANSACTION,
  );
  private readonly statusReads = new BatchQueue<StatusLookup, { status: OrderStatus | null; wal: WalMark }>(
    (batch) => this.readStatuses(batch),
    MAX_READS_PER_STATEMENT,
  );
  /** Replies wait here until what they reveal is on disk. */
  readonly durability: DurabilityBarrier;

  private readonly pruner: OutcomePruner;
  private readonly writeTimeoutMs: number;
  private readonly outcomeLookupMs: number;

  constructor(
    private readonly pool: pg.Pool,
    private readonly retryPolicy: RetryPolicy = DEFAULT_RETRY_POLICY,
    private readonly writeFlush: WriteFlush = 'auto',
    /**
     * Where order-status reads run: a pool whose sessions default to READ COMMITTED
     * (createPool's isolation), or the main pool. Either is correct, see readStatuses.
     */
    private readonly statusReadPool: pg.Pool = pool,
    limits: WriteLimits = {},
  ) {
    this.durability = new DurabilityBarrier(walFlusher(pool));
    this.pruner = new OutcomePruner(pool);
    this.writeTimeoutMs = limits.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    this.outcomeLookupMs = limits.outcomeLookupMs ?? DEFAULT_OUTCOME_LOOKUP_MS;
  }

  /** One statement = one implicit SERIALIZABLE transaction (see pool.ts), retried as a whole. */
  private query<Row extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<Row>> {
    return withRetry(() => this.pool.query<Row>(sql, params), this.retryPolicy, this.retryCounters);
  }

  /**
   * A read changes nothing, so one whose connection failed (PostgreSQL restarting, say)
   * is simply made again, until PostgreSQL answers or the lookup deadline passes:
   * "outcome unknown" is for writes that may have committed, never for a read.
   */
  private async read<T>(attempt: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.outcomeLookupMs;
    for (let delay = 50; ; delay = Math.min(1_000, delay * 2)) {
      try {
        return await withRetry(attempt, this.retryPolicy, this.retryCounters);
      } catch (error) {
        if (!isConnectionFailure(error) || Date.now() + delay > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  async instanceId(): Promise<string> {
    const result = await this.read(() =>
      this.pool.query<{ instance_id: string }>('SELECT instance_id FROM exchange_instance'),
    );
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
    const result = await this.query<{ problem: string | null }>('SELECT add_shares($1, $2, $3) AS problem', [
      accountId,
      sym,
      shares,
    ]);
    const problem = result.rows[0]?.problem ?? null;
    return problem === null ? null : codeFromSql(problem, ADD_SHARES_REJECTIONS);
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

  /** The write queue's batch: its writes, then what it takes to know how each ended. */
  private applyWrites(batch: WriteRequest[]): Promise<Array<PromiseSettledResult<WriteResult>>> {
    metrics.writeBatchSize.observe(batch.length);
    this.pruner.maybePrune();
    return this.runWrites(batch, 1);
  }

  /**
   * Runs writes as one transaction, and answers each of them with its real outcome
   * whenever that can be known:
   * - Committed: the replies wait for the WAL flush (the batch committed without
   *   waiting for it, so the write lock is never held across one; writes arriving
   *   meanwhile form the next batch, as large as when COMMIT flushed).
   * - An error raised inside one write (a statement error) rolled the batch back:
   *   each write runs again on its own and only the culprit fails.
   * - Anything else (the connection lost mid-COMMIT, the flush failed or PostgreSQL
   *   restarted before it, the statement timeout) may or may not have committed: the
   *   batch's token is looked up (write-outcome.ts) once PostgreSQL answers again.
   *   Committed: the results are read back. Not committed, and now never will be: after
   *   the time limit, each write runs alone, so only the write that is too long fails;
   *   after anything else, the batch runs again once (whole), then each write alone.
   *   Only when PostgreSQL stays away past the lookup deadline is the outcome unknown.
   */
  private async runWrites(batch: WriteRequest[], reruns: number): Promise<Array<PromiseSettledResult<WriteResult>>> {
    const token = newBatchToken();
    const started = Date.now();
    let failure: unknown;
    let committed: WriteResult[] | null = null;
    try {
      const { rows, wal } = await this.writeTransaction(batch, token);
      committed = batch.map((request, index) => writeResult(request, rows[index], wal));
      await this.durability.waitFor(wal);
      return committed.map((value) => ({ status: 'fulfilled', value }));
    } catch (error) {
      if (committed === null && isStatementError(error)) {
        return batch.length === 1 ? [{ status: 'rejected', reason: error }] : this.eachAlone(batch);
      }
      // Every attempt was aborted before it could commit.
      if (error instanceof RetriesExhaustedError) return batch.map(() => ({ status: 'rejected', reason: error }));
      failure = error;
    }
    const timedOut = committed === null && isQueryCanceled(failure) && Date.now() - started >= this.writeTimeoutMs;
    const outcome = await awaitBatchOutcome(this.pool, token, this.outcomeLookupMs);
    log.warn('write batch failed; its outcome was looked up', {
      writes: batch.length,
      error: failure instanceof Error ? failure.message : String(failure),
      outcome: outcome === null ? 'unknown' : outcome.committed ? 'committed' : 'not committed',
    });
    if (outcome === null) return batch.map(() => ({ status: 'rejected', reason: failure }));
    if (outcome.committed) {
      try {
        const results = committed ?? (await this.recoveredResults(batch, outcome.record));
        await this.durability.waitFor(outcome.wal);
        return results.map((value) => ({ status: 'fulfilled', value: { ...value, wal: outcome.wal } }));
      } catch (error) {
        return batch.map(() => ({ status: 'rejected', reason: error }));
      }
    }
    // Nothing of the batch was applied, and it never will be: its writes may run again.
    if (timedOut)
      return batch.length === 1
        ? [{ status: 'rejected', reason: new WriteTooLongError(this.writeTimeoutMs) }]
        : this.eachAlone(batch);
    if (reruns > 0) return this.runWrites(batch, reruns - 1);
    if (batch.length > 1) return this.eachAlone(batch);
    return [{ status: 'rejected', reason: new WriteNotAppliedError(failure) }];
  }

  /** Each write in a transaction of its own, in order (so each sees what the previous did). */
  private async eachAlone(batch: WriteRequest[]): Promise<Array<PromiseSettledResult<WriteResult>>> {
    const results: Array<PromiseSettledResult<WriteResult>> = [];
    for (const request of batch) results.push(...(await this.runWrites([request], 0)));
    return results;
  }

  /**
   * A committed batch's results, from its record: an order's id or rejection; a cancel's
   * outcome, and for a canceled order its canceled shares, time and fills, read from the
   * order (final once it is canceled). The fill count of an order is not kept (it only
   * feeds a metric).
   */
  private async recoveredResults(batch: WriteRequest[], record: BatchRecord): Promise<WriteResult[]> {
    const canceledIds = batch.flatMap((request, index) =>
      request.kind === 'cancel' && record.outcomes[index] === 'canceled' ? [request.orderId] : [],
    );
    const canceled = new Map<string, WriteRow>();
    if (canceledIds.length > 0) {
      const result = await this.read(() =>
        this.pool.query<WriteRow & { id: string }>(
          `SELECT o.id::text AS id, o.canceled_shares AS shares_canceled, o.canceled_at AS time_canceled,
                (SELECT jsonb_agg(jsonb_build_array(f.shares::text, f.price::text, f.executed_at::text) ORDER BY f.execution_id)
                   FROM order_fills f WHERE f.order_id = o.id) AS fills
           FROM orders o WHERE o.id = ANY ($1::bigint[])`,
          [canceledIds],
        ),
      );
      for (const row of result.rows) canceled.set(row.id, { ...row, outcome: 'canceled' });
    }
    const noMark: WalMark = { needed: 0n, flushed: 0n, epoch: '' };
    return batch.map((request, index) => {
      const orderId = record.orderIds[index] ?? null;
      const outcome = record.outcomes[index] ?? null;
      const row: WriteRow =
        request.kind === 'order'
          ? {
              order_id: orderId,
              rejection: outcome,
              fill_count: 0,
              outcome: null,
              shares_canceled: null,
              time_canceled: null,
              fills: null,
            }
          : // Keyed as PostgreSQL prints the id: the request may have sent it with leading zeros.
            (canceled.get(BigInt(request.orderId).toString()) ?? {
              order_id: null,
              rejection: null,
              fill_count: null,
              outcome,
              shares_canceled: null,
              time_canceled: null,
              fills: null,
            });
      return writeResult(request, row, noMark);
    });
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
  private writeTransaction(batch: WriteRequest[], token: string): Promise<{ rows: WriteRow[]; wal: WalMark }> {
    const column = (value: (request: WriteRequest) => string | null) => arrayLiteral(batch.map(value));
    // statement_timeout bounds how long a batch holds the write lock: set once the lock is
    // held, so that waiting for it (while another batch runs) does not count.
    const sql = `BEGIN ISOLATION LEVEL SERIALIZABLE;
SET LOCAL synchronous_commit = ${this.writeFlush === 'after-lock' ? 'off' : 'on'};
LOCK TABLE exchange_write_lock IN EXCLUSIVE MODE;
SET LOCAL statement_timeout = ${this.writeTimeoutMs};
EXECUTE apply_batch(${pg.escapeLiteral(token)}, ${column((request) => request.kind)}, ${column((request) => request.accountId)},
  ${column((request) => (request.kind === 'order' ? request.sym : null))},
  ${column((request) => (request.kind === 'order' ? request.amount : null))},
  ${column((request) => (request.kind === 'order' ? request.limit : null))},
  ${column((request) => (request.kind === 'cancel' ? request.orderId : null))});
COMMIT;
SELECT ${WAL_MARK_COLUMNS};`;
    const attempt = () =>
      withRetry(
        () =>
          withPoolClient(this.pool, async (client, connection) => {
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
                await client.query('ROLLBACK').catch(() => connection.discard());
                // A plan that no longer fits (0A000) leaves the statement in place: drop it so it can be made again.
                if (connection.healthy && isPreparedStatementError(error))
                  await client.query('DEALLOCATE apply_batch').catch(() => undefined);
              } else {
                connection.discard();
              }
              throw error;
            }
          }),
        this.retryPolicy,
        this.retryCounters,
      );
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
