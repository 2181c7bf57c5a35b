/**
 * The exchange's write lane: orders and cancels, gathered into batches (one
 * SERIALIZABLE transaction and one commit each: group commit), run one batch at a
 * time under the write lock, each reply given only once its commit is durable and
 * its outcome known. One lane serves one process, or (WORKERS > 1) every worker of
 * the host through the primary (forwarded-writes.ts), so more processes never mean
 * smaller batches taking turns on the lock.
 */
import pg from 'pg';
import { BatchQueue } from './batch-queue.js';
import { metrics } from '../observability/metrics.js';
import {
  DEFAULT_RETRY_POLICY,
  RetriesExhaustedError,
  isRetryable,
  withReconnects,
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
import { ERROR_MESSAGES } from '../errors.js';
import { BackToBackClient } from './pool.js';
import { CANCEL_REJECTIONS, ORDER_REJECTIONS, codeFromSql } from './sql-codes.js';
import type { CancelResult, PlaceOrderResult } from './exchange-store.js';

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
export const DEFAULT_OUTCOME_LOOKUP_MS = 30_000;

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

/** Most writes one transaction carries (group commit of the queue). */
const MAX_WRITES_PER_TRANSACTION = 64;

export type WriteRequest =
  | { kind: 'order'; accountId: string; sym: string; amount: string; limit: string }
  | { kind: 'cancel'; accountId: string; orderId: string };
/** A write's outcome, given once it is durable. */
export type WriteOutcome = { kind: 'order'; result: PlaceOrderResult } | { kind: 'cancel'; result: CancelResult };
/** wal: what the reply must wait for before it may be sent (see durability.ts). */
type WriteResult = WriteOutcome & { wal: WalMark };

/** Where writes go: a lane of this process, or one the primary runs for every worker. */
export interface WriteSubmitter {
  submit(request: WriteRequest): Promise<WriteOutcome>;
}
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

/**
 * A row of apply_batch: the write's, and how the transaction commits as apply_writes left
 * it (the same in every row: no row exists before apply_writes returned).
 */
type BatchRow = WriteRow & { commit_mode: string };

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
SELECT w.order_id, w.rejection, w.fill_count, w.outcome, w.shares_canceled, w.time_canceled, w.fills,
       current_setting('synchronous_commit') AS commit_mode
  FROM w ORDER BY w.n`;

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

export type WriteLaneOptions = WriteLimits & {
  retryPolicy?: RetryPolicy;
  writeFlush?: WriteFlush;
  /** Counted into these (a store's own, so its metrics and log include the lane's retries). */
  retryCounters?: RetryCounters;
  /** Shared with the store's reads when both are in one process. */
  durability?: DurabilityBarrier;
};

export class WriteLane implements WriteSubmitter {
  readonly retryCounters: RetryCounters;
  /** Connections that have apply_batch prepared (a prepared statement lives as long as its session). */
  private readonly preparedClients = new WeakSet<pg.PoolClient>();
  private readonly queue = new BatchQueue<WriteRequest, WriteResult>(
    (batch) => this.applyWrites(batch),
    MAX_WRITES_PER_TRANSACTION,
  );
  /** Replies wait here until what they reveal is on disk. */
  readonly durability: DurabilityBarrier;
  private readonly pruner: OutcomePruner;
  private readonly retryPolicy: RetryPolicy;
  private readonly writeFlush: WriteFlush;
  private readonly writeTimeoutMs: number;
  private readonly outcomeLookupMs: number;
  /** The batches' connection, kept while they run back to back. */
  private readonly connection: BackToBackClient;

  constructor(
    private readonly pool: pg.Pool,
    options: WriteLaneOptions = {},
  ) {
    this.retryCounters = options.retryCounters ?? { retries: 0, exhausted: 0 };
    this.durability = options.durability ?? new DurabilityBarrier(walFlusher(pool));
    this.pruner = new OutcomePruner(pool);
    this.retryPolicy = options.retryPolicy ?? DEFAULT_RETRY_POLICY;
    this.writeFlush = options.writeFlush ?? 'auto';
    this.writeTimeoutMs = options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    this.outcomeLookupMs = options.outcomeLookupMs ?? DEFAULT_OUTCOME_LOOKUP_MS;
    this.connection = new BackToBackClient(pool);
  }

  async submit(request: WriteRequest): Promise<WriteOutcome> {
    const { wal: _durable, ...outcome } = await this.queue.submit(request);
    return outcome;
  }

  /** A read that changes nothing is made again after a lost connection, up to the lookup deadline. */
  private read<T>(attempt: () => Promise<T>): Promise<T> {
    return withReconnects(attempt, this.outcomeLookupMs, this.retryPolicy, this.retryCounters);
  }

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
      const transaction = this.writeTransaction(batch, token);
      // Only 'auto' commits synchronously (unless other writers wait), so only then can waits ride on it.
      if (this.writeFlush === 'auto') this.durability.syncCommitInFlight(transaction.then((result) => result.wal));
      const { rows, wal, synchronous } = await transaction;
      committed = batch.map((request, index) => writeResult(request, rows[index], wal));
      // A synchronous commit returned only once its commit record, and all WAL before it, was
      // flushed: nothing more to wait for (nor a flush, or a connection, to wait on).
      if (!synchronous) await this.durability.waitFor(wal);
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
  private writeTransaction(
    batch: WriteRequest[],
    token: string,
  ): Promise<{ rows: WriteRow[]; wal: WalMark; synchronous: boolean }> {
    const column = (value: (request: WriteRequest) => string | null) => arrayLiteral(batch.map(value));
    // statement_timeout bounds how long a batch holds the write lock: set once the lock is
    // held, so that waiting for it (while another batch runs) does not count.
    // The session commits synchronously (createPool) unless told otherwise here.
    const sql = `BEGIN ISOLATION LEVEL SERIALIZABLE;${this.writeFlush === 'after-lock' ? '\nSET LOCAL synchronous_commit = off;' : ''}
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
          this.connection.run(async (client, connection) => {
            try {
              if (!this.preparedClients.has(client)) {
                // Its own round trip, before the batch's message, so the lock is not held meanwhile.
                await client.query(PREPARE_APPLY_BATCH);
                this.preparedClients.add(client);
              }
              const results = (await client.query(sql)) as unknown as Array<pg.QueryResult>;
              // ..., EXECUTE apply_batch, COMMIT, SELECT the WAL mark.
              const selected = results.at(-3) as pg.QueryResult<BatchRow> | undefined;
              const mark = (results.at(-1) as pg.QueryResult<WalMarkRow> | undefined)?.rows[0];
              if (!selected || !mark) throw new Error('the write transaction returned no batch result');
              // apply_writes turns it off only for this transaction, when other writers wait.
              // Anything but 'on' (set for the database, say) is not what the flusher's commit
              // gives: the replies then wait for it.
              const synchronous = selected.rows.length > 0 && selected.rows.every((row) => row.commit_mode === 'on');
              return { rows: selected.rows, wal: walMarkOf(mark), synchronous };
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
    const started = performance.now();
    // A connection that lost the prepared statement (nothing committed) prepares it again, once.
    const transaction = attempt().catch((error: unknown) => {
      if (!isPreparedStatementError(error)) throw error;
      return attempt();
    });
    // The lane's busy time: every attempt, until the transaction is settled either way.
    const busy = () => metrics.writeLaneBusy.inc((performance.now() - started) / 1000);
    transaction.then(busy, busy);
    return transaction;
  }
}
