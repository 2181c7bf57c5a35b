/**
 * Did a write batch commit, and what did it answer? Each batch's transaction records
 * its results under a token the server made for it (schema/005_write_batches.sql), in
 * the batch's own statement. When the batch's connection fails (mid-COMMIT, say), the
 * outcome is looked up here, once PostgreSQL answers again: either the batch committed
 * and its results are read back, or a tombstone under its token makes sure it never
 * will, and its writes can safely run again.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { WAL_MARK_COLUMNS, walMarkOf, type WalMark, type WalMarkRow } from './durability.js';
import { withPoolClient } from './pool.js';
import { setTimeout as sleep } from 'node:timers/promises';

/** How long a batch's record is kept: far longer than any lookup of it may take. */
export const OUTCOME_RETENTION_MS = 10 * 60_000;
/** Records older than the retention are deleted at most this often (by each process). */
const PRUNE_INTERVAL_MS = 60_000;

// Random bits for tokens come from a pool, filled once per 256 tokens: each randomBytes
// call costs a system call (OpenSSL checks the pid for forks), once per batch otherwise.
const RANDOM_BYTES_PER_TOKEN = 10;
let randomPool = Buffer.alloc(0);
let randomOffset = 0;

function tokenRandomBytes(): Buffer {
  if (randomOffset + RANDOM_BYTES_PER_TOKEN > randomPool.length) {
    randomPool = randomBytes(256 * RANDOM_BYTES_PER_TOKEN);
    randomOffset = 0;
  }
  randomOffset += RANDOM_BYTES_PER_TOKEN;
  return randomPool.subarray(randomOffset - RANDOM_BYTES_PER_TOKEN, randomOffset);
}

/** A UUID version 7: 48 bits of milliseconds since the epoch, then 74 random bits. */
export function uuidV7(milliseconds: number, random: Buffer = tokenRandomBytes()): string {
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(Math.max(0, Math.floor(milliseconds)), 0, 6);
  random.copy(bytes, 6, 0, 10);
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x70;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function newBatchToken(): string {
  return uuidV7(Date.now());
}

/** What a committed batch recorded: per write, in order, its order id or its outcome text. */
export type BatchRecord = { orderIds: Array<string | null>; outcomes: Array<string | null> };
export type BatchOutcome = { committed: true; record: BatchRecord; wal: WalMark } | { committed: false };

type OutcomeRow = WalMarkRow & { order_ids: string[] | null; outcomes: Array<string | null> | null };

/** A token is only ever one we made; checked anyway, since it is inlined in SQL. */
function checkedToken(token: string): string {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(token))
    throw new Error(`not a batch token: ${token}`);
  return token;
}

/**
 * One attempt: the tombstone insert (which waits for a batch still holding the token
 * uncommitted), then the row, in one READ COMMITTED transaction (each statement sees what
 * committed before it; no serialization failure with the batch) committed synchronously,
 * so a tombstone that let writes run again is on disk before they do. The WAL mark,
 * taken after the row was read, covers the batch's commit: its replies wait for it,
 * as every reply does. Idempotent: a tombstone left by an earlier attempt reads the same.
 */
export async function lookUpBatch(pool: pg.Pool, token: string): Promise<BatchOutcome> {
  const literal = `'${checkedToken(token)}'`;
  return withPoolClient(pool, async (client, connection) => {
    try {
      const results = (await client.query(`BEGIN ISOLATION LEVEL READ COMMITTED;
SET LOCAL synchronous_commit = on;
INSERT INTO write_batches (token) VALUES (${literal}) ON CONFLICT (token) DO NOTHING;
SELECT order_ids, outcomes, ${WAL_MARK_COLUMNS} FROM write_batches WHERE token = ${literal};
COMMIT;`)) as unknown as Array<pg.QueryResult>;
      const row = (results[3] as pg.QueryResult<OutcomeRow> | undefined)?.rows[0];
      if (!row) throw new Error('the batch outcome lookup returned no row');
      if (row.order_ids === null || row.outcomes === null) return { committed: false };
      return { committed: true, record: { orderIds: row.order_ids, outcomes: row.outcomes }, wal: walMarkOf(row) };
    } catch (error) {
      // Discarded, not rolled back: closing the connection ends its transaction.
      connection.discard();
      throw error;
    }
  });
}

/**
 * Looks the batch up until PostgreSQL answers or the deadline passes (then null: the
 * outcome stays unknown). Retries back off from 50 ms to 1 s.
 */
export async function awaitBatchOutcome(
  pool: pg.Pool,
  token: string,
  deadlineMs: number,
): Promise<BatchOutcome | null> {
  const deadline = Date.now() + deadlineMs;
  for (let delay = 50; ; delay = Math.min(1_000, delay * 2)) {
    try {
      return await lookUpBatch(pool, token);
    } catch {
      if (Date.now() + delay > deadline) return null;
      await sleep(delay);
    }
  }
}

/** Deletes old records now and then, outside the write lock, never holding up a batch. */
export class OutcomePruner {
  private last = Date.now();
  private running = false;

  constructor(private readonly pool: pg.Pool) {}

  /** Called after each batch: starts a prune when one is due. */
  maybePrune(now = Date.now()): void {
    if (this.running || now - this.last < PRUNE_INTERVAL_MS) return;
    this.last = now;
    this.running = true;
    this.prune(now)
      .catch(() => undefined)
      .finally(() => {
        this.running = false;
      });
  }

  /**
   * READ COMMITTED: the delete takes part in no serializable conflict with the batches
   * inserting at the other end of the index. Both clocks must say a row is old.
   */
  async prune(now = Date.now()): Promise<number> {
    const bound = uuidV7(now - OUTCOME_RETENTION_MS, Buffer.alloc(10));
    const results = (await this.pool.query(`BEGIN ISOLATION LEVEL READ COMMITTED;
DELETE FROM write_batches WHERE token < '${bound}' AND created_at < now() - interval '${OUTCOME_RETENTION_MS} milliseconds';
COMMIT;`)) as unknown as Array<pg.QueryResult>;
    return results[1]?.rowCount ?? 0;
  }
}
