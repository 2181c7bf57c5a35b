/**
 * When is a commit durable? Write batches commit with synchronous_commit = off,
 * so the exchange's one serial lane (the write lock) never waits for a WAL
 * flush. No reply may reveal state before it is durable, so every reply first
 * waits here until the WAL is flushed past the position (LSN) it depends on.
 *
 * The flush itself is one small synchronous commit of a transaction that wrote
 * WAL (a commit that wrote nothing is not flushed), so PostgreSQL flushes the
 * WAL up to its commit record. WAL is flushed in order, so that flush covers
 * every commit before it, of this process and of any other: one flush serves
 * every reply waiting at that moment, and flushes of several processes are
 * merged further by PostgreSQL's own group commit.
 */
import type pg from 'pg';
import { withRetry, type RetryCounters, type RetryPolicy } from './retry.js';

/** A WAL position as PostgreSQL prints it ("16/B374D848"), as a number. */
export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!match) throw new Error(`not a WAL position: ${JSON.stringify(text)}`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/**
 * A WAL position a reply depends on (the end of what it saw or wrote) and the
 * flush position PostgreSQL reported at that moment.
 */
export type WalMark = { needed: bigint; flushed: bigint };

/** SQL giving the two columns of a WalMark; evaluated after the statement's snapshot or commit. */
export const WAL_MARK_COLUMNS = 'pg_current_wal_insert_lsn()::text AS wal_needed, pg_current_wal_flush_lsn()::text AS wal_flushed';

export function walMarkOf(row: { wal_needed: string; wal_flushed: string }): WalMark {
  return { needed: parseLsn(row.wal_needed), flushed: parseLsn(row.wal_flushed) };
}

/** Flushes the WAL at least up to the current insert position; returns a position now durable. */
export type WalFlusher = () => Promise<bigint>;

/**
 * One synchronous commit of a transaction whose only write is a transactional
 * logical-decoding message: a WAL record and a transaction id, no table, no row
 * lock, nothing for SERIALIZABLE to conflict on (and nothing for a decoder to
 * act on: the prefix names it). Its commit record comes after every commit
 * already visible, and PostgreSQL returns only once it is flushed. Returns the
 * message's position, which that flush covers.
 */
export function walFlusher(pool: pg.Pool, retryPolicy?: RetryPolicy, counters?: RetryCounters): WalFlusher {
  return async () => {
    const result = await withRetry(() => pool.query<{ lsn: string }>({
      name: 'flush-wal',
      text: "SELECT pg_logical_emit_message(true, 'exchange-flush', '')::text AS lsn",
    }), retryPolicy, counters);
    const row = result.rows[0];
    if (!row) throw new Error('WAL flush returned no position');
    return parseLsn(row.lsn);
  };
}

/**
 * Coalesces waits for durability: at most one flush runs at a time; every wait
 * that arrives meanwhile joins the next one, which starts when it ends.
 */
export class DurabilityBarrier {
  /** Everything up to here is known to be on disk. */
  private durable = 0n;
  private inFlight: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  flushes = 0;

  constructor(private readonly flush: WalFlusher) {}

  /** Resolves once the WAL is durable up to mark.needed; rejects if the flush fails (outcome unknown). */
  async waitFor(mark: WalMark): Promise<void> {
    if (mark.flushed > this.durable) this.durable = mark.flushed;
    while (this.durable < mark.needed) await this.flushAfterNow();
  }

  /** A flush that starts after this call (one already running may have started before our commit). */
  private flushAfterNow(): Promise<void> {
    if (!this.inFlight) return (this.inFlight = this.runFlush());
    if (!this.next) {
      this.next = this.inFlight.catch(() => undefined).then(() => {
        this.next = null;
        return (this.inFlight = this.runFlush());
      });
    }
    return this.next;
  }

  private async runFlush(): Promise<void> {
    try {
      this.flushes++;
      const covered = await this.flush();
      if (covered > this.durable) this.durable = covered;
    } finally {
      this.inFlight = null;
    }
  }
}
