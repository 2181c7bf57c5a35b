/**
 * A WAL flusher the test controls, for the durability barrier's tests (the real flush is a
 * PostgreSQL commit, exercised by the fault tests that crash it).
 */
type Covered = { lsn: bigint; epoch: string };

/** A flusher whose flushes the test ends one by one, each covering what it is told (in epoch E1 unless told otherwise). */
export function controlledFlusher(): {
  flush: () => Promise<Covered>;
  started: () => number;
  finish: (lsn: bigint, epoch?: string) => void;
  fail: () => void;
} {
  const pending: Array<{ resolve: (covered: Covered) => void; reject: (error: Error) => void }> = [];
  let started = 0;
  return {
    flush: () => {
      started++;
      return new Promise<Covered>((resolve, reject) => pending.push({ resolve, reject }));
    },
    started: () => started,
    finish: (lsn, epoch = E1) => pending.shift()?.resolve({ lsn, epoch }),
    fail: () => pending.shift()?.reject(new Error('connection lost')),
  };
}

/** Two runs of PostgreSQL (postmaster start times). */
export const E1 = '2026-12-07 10:00:00+00';
export const E2 = '2026-12-07 10:05:00+00';
export const mark = (needed: bigint, flushed: bigint, epoch = E1) => ({ needed, flushed, epoch });
