/**
 * When is a commit durable? Write batches commit with synchronous_commit = off,
 * so the exchange's one serial lane (the write lock) never waits for a WAL
 * flush. No reply may reveal state before it is durable, so every reply first
 * waits here until the WAL is flushed past the position (LSN) it depends on.
 *
 * The flush itself is one small synchronous commit of a transaction that wrote
 * WAL (a commit that wrote nothing is not flushed), so PostgreSQL flushes the
 * WAL up to its commit record (and, with synchronous replication, waits for the
 * standby). WAL is flushed in order, so that flush covers every commit before
 * it, of this process and of any other: one flush serves every reply waiting at
 * that moment, and flushes of several processes are merged further by
 * PostgreSQL's own group commit.
 *
 * A wait does not always need a flush of its own: a status read's mark is the
 * WAL insert position, which runs ahead of what the read saw (it includes the WAL
 * of a write batch still running). When this process's write lane has a batch
 * in flight that commits synchronously, its commit flushes the WAL past that
 * mark anyway, so the wait first rides on it, briefly, and flushes only if that
 * did not cover it. (Each read used to force a flush: a second fsync beside the
 * lane's, which the lane's commit then queued behind.)
 *
 * WAL positions compare only within one run of one PostgreSQL server: after a
 * crash, WAL that never reached disk is discarded and new WAL reuses its
 * positions (a promoted standby goes on from its own). So every position
 * carries the postmaster's start time as an epoch, and a reply whose commit was
 * made under another epoch than the flush's has an unknown outcome.
 */
import type pg from 'pg';
import { metrics } from '../observability/metrics.js';

/** A WAL position as PostgreSQL prints it ("16/B374D848"), as a number. */
export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!match) throw new Error(`not a WAL position: ${JSON.stringify(text)}`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/**
 * A WAL position a reply depends on (the end of what it saw or wrote), a
 * position PostgreSQL reported durable at that moment, and the epoch both
 * belong to.
 */
export type WalMark = { needed: bigint; flushed: bigint; epoch: string };

/**
 * SQL giving the columns of a WalMark, evaluated after the statement's snapshot
 * or commit. The local flush position counts as durable only without
 * synchronous standbys: with them, durable means confirmed by a standby too,
 * which only a synchronous commit (the flusher's) waits for.
 */
export const WAL_MARK_COLUMNS = `pg_current_wal_insert_lsn()::text AS wal_needed,
  CASE WHEN current_setting('synchronous_standby_names') = '' THEN pg_current_wal_flush_lsn() ELSE '0/0'::pg_lsn END::text AS wal_flushed,
  pg_postmaster_start_time()::text AS wal_epoch`;

export type WalMarkRow = { wal_needed: string; wal_flushed: string; wal_epoch: string };

export function walMarkOf(row: WalMarkRow): WalMark {
  return { needed: parseLsn(row.wal_needed), flushed: parseLsn(row.wal_flushed), epoch: row.wal_epoch };
}

/** Flushes the WAL at least up to the current insert position; returns a position now durable, and its epoch. */
export type WalFlusher = () => Promise<{ lsn: bigint; epoch: string }>;

/** Where replies wait until what they reveal is durable: a barrier of this process, or the primary's. */
export interface DurabilityWaiter {
  /** Resolves once the WAL is durable up to mark.needed; rejects when that is unknown. */
  waitFor(mark: WalMark): Promise<void>;
}

/** The outcome of a reply whose commit PostgreSQL may have lost in a restart is unknown. */
export class DurabilityLostError extends Error {
  constructor() {
    super('PostgreSQL restarted before the reply was on disk: its outcome is unknown');
    this.name = 'DurabilityLostError';
  }
}

/**
 * One synchronous commit of a transaction whose only write is a transactional
 * logical-decoding message: a WAL record and a transaction id, no table, no row
 * lock, nothing for SERIALIZABLE to conflict on (and nothing for a decoder to
 * act on: the prefix names it). Its commit record comes after every commit
 * already visible, and PostgreSQL returns only once it is flushed. Returns the
 * message's position, which that flush covers. Never retried: a failure means
 * the waiting replies' outcome is unknown.
 */
export function walFlusher(pool: pg.Pool): WalFlusher {
  return async () => {
    const result = await pool.query<{ lsn: string; epoch: string }>({
      name: 'flush-wal',
      text: "SELECT pg_logical_emit_message(true, 'exchange-flush', '')::text AS lsn, pg_postmaster_start_time()::text AS epoch",
    });
    const row = result.rows[0];
    if (!row) throw new Error('WAL flush returned no position');
    return { lsn: parseLsn(row.lsn), epoch: row.epoch };
  };
}

/**
 * How long a wait rides on a synchronous commit in flight before it flushes on
 * its own: a few batches' time at 8-32 connections, so a long sweep under the
 * write lock never holds a read up for long.
 */
export const RIDE_LIMIT_MS = 5;

/**
 * Coalesces waits for durability: at most one flush runs at a time; every wait
 * that arrives meanwhile joins the next one, which starts when it ends. A wait
 * first rides on a synchronous commit in flight, if there is one.
 */
export class DurabilityBarrier implements DurabilityWaiter {
  /** The epoch last seen, and everything up to `durable` in it is known to be on disk. */
  private epoch: string | null = null;
  private durable = 0n;
  private inFlight: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  /** The highest position the waits queued for the next flush need. */
  private nextNeeds = 0n;
  /** Settles when the synchronous commit in flight has reported what it flushed. */
  private syncCommit: Promise<void> | null = null;

  constructor(
    private readonly flush: WalFlusher,
    private readonly rideLimitMs = RIDE_LIMIT_MS,
  ) {}

  /**
   * A write batch of this process is committing, synchronously unless other writers
   * wait for the lock: the flush position it reports afterwards serves the waits
   * meanwhile. (Whatever it reports, each wait checks its own mark against it.)
   */
  syncCommitInFlight(commit: Promise<WalMark>): void {
    const reported: Promise<void> = commit
      .then(
        (mark) => {
          // A mark of another run of PostgreSQL is left to a flush, which settles the epoch.
          if (mark.epoch === this.epoch || this.epoch === null) this.observe(mark.epoch, mark.flushed);
        },
        () => undefined,
      )
      .finally(() => {
        if (this.syncCommit === reported) this.syncCommit = null;
      });
    this.syncCommit = reported;
  }

  /**
   * Resolves once the WAL is durable up to mark.needed; rejects if the flush
   * fails or PostgreSQL restarted since the mark (the outcome is then unknown).
   */
  async waitFor(mark: WalMark): Promise<void> {
    if (mark.epoch === this.epoch || this.epoch === null) this.observe(mark.epoch, mark.flushed);
    // Already on disk when the mark was taken: nothing to wait for.
    if (mark.flushed >= mark.needed) return;
    // A mark of another run of PostgreSQL makes that run the one waited on (waits of the
    // other run then fail: their positions mean nothing in this one).
    this.observe(mark.epoch, mark.flushed);
    let rode = false;
    for (;;) {
      if (this.epoch !== mark.epoch) throw new DurabilityLostError();
      if (this.durable >= mark.needed) return;
      if (!rode && this.syncCommit) {
        rode = true;
        await this.rideOn(this.syncCommit);
        continue;
      }
      await this.flushAfterNow(mark.needed);
    }
  }

  /** Until the commit reported, or the ride limit passed. */
  private async rideOn(commit: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.rideLimitMs);
    });
    try {
      await Promise.race([commit, limit]);
    } finally {
      clearTimeout(timer);
    }
  }

  private observe(epoch: string, durable: bigint): void {
    if (epoch !== this.epoch) {
      this.epoch = epoch;
      this.durable = durable;
    } else if (durable > this.durable) {
      this.durable = durable;
    }
  }

  /** A flush that starts after this call (one already running may have started before our commit). */
  private flushAfterNow(needed: bigint): Promise<void> {
    if (!this.inFlight) return (this.inFlight = this.runFlush());
    if (needed > this.nextNeeds) this.nextNeeds = needed;
    if (!this.next) {
      this.next = this.inFlight
        .catch(() => undefined)
        .then(() => {
          this.next = null;
          const needs = this.nextNeeds;
          this.nextNeeds = 0n;
          // The flush that just ended may already cover every wait that queued behind it (their
          // marks were taken before it started): then none is needed. Each wait checks its own.
          if (this.durable >= needs) return;
          return (this.inFlight = this.runFlush());
        });
    }
    return this.next;
  }

  private async runFlush(): Promise<void> {
    try {
      metrics.walFlushes.inc();
      const covered = await this.flush();
      this.observe(covered.epoch, covered.lsn);
    } finally {
      this.inFlight = null;
    }
  }
}
