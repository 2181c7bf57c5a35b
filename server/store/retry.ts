/**
 * Bounded, jittered retry of transactions PostgreSQL aborted to keep them
 * serializable. Only 40001 and 40P01 are retried: the server reports those
 * before anything commits, so a retry can never apply an order twice. Any
 * other failure (a lost connection mid-COMMIT included) is passed up, because
 * its outcome is unknown and retrying could double-apply.
 */
import { log } from '../log.js';
import { setTimeout as sleep } from 'node:timers/promises';

export const SERIALIZATION_FAILURE = '40001';
export const DEADLOCK_DETECTED = '40P01';

export type RetryPolicy = {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
};

const RETRY_STORM_ATTEMPTS = 10;

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 100, baseDelayMs: 1, maxDelayMs: 50 };

export type RetryCounters = { retries: number; exhausted: number };

/** Thrown when every attempt was aborted by PostgreSQL; nothing was applied. */
export class RetriesExhaustedError extends Error {
  constructor(
    readonly attempts: number,
    readonly lastError: unknown,
  ) {
    super(`transaction aborted ${attempts} times by concurrent updates`);
    this.name = 'RetriesExhaustedError';
  }
}

export function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === SERIALIZATION_FAILURE || code === DEADLOCK_DETECTED;
}

/** Full-jitter exponential backoff, so retrying rivals spread out instead of colliding again. */
export function backoffMs(attempt: number, policy: RetryPolicy): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt, 20));
  return Math.random() * ceiling;
}

export async function withRetry<T>(
  attemptOnce: () => Promise<T>,
  policy: RetryPolicy = DEFAULT_RETRY_POLICY,
  counters?: RetryCounters,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await attemptOnce();
    } catch (error) {
      if (!isRetryable(error)) throw error;
      if (attempt >= policy.maxAttempts) {
        if (counters) counters.exhausted++;
        throw new RetriesExhaustedError(attempt, error);
      }
      if (counters) counters.retries++;
      // One line per transaction that keeps losing: a sign of a retry storm.
      if (attempt === RETRY_STORM_ATTEMPTS)
        log.warn('retry storm: a transaction keeps being aborted', { attempts: attempt });
      await sleep(backoffMs(attempt, policy));
    }
  }
}

/**
 * The connection failed or PostgreSQL is going away or not yet accepting (class 08,
 * 57P01-57P03), or the pool could not connect: no SQLSTATE of a statement's own.
 */
export function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === undefined || code === null) return error instanceof Error && !(error instanceof RetriesExhaustedError);
  return typeof code === 'string' && (/^(08|57P0[123])/.test(code) || /^E[A-Z]+$/.test(code));
}

/**
 * A read changes nothing, so one whose connection failed (PostgreSQL restarting, say)
 * is simply made again, until PostgreSQL answers or the deadline passes: "outcome
 * unknown" is for writes that may have committed, never for a read.
 */
export async function withReconnects<T>(
  attempt: () => Promise<T>,
  deadlineMs: number,
  policy: RetryPolicy = DEFAULT_RETRY_POLICY,
  counters?: RetryCounters,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (let delay = 50; ; delay = Math.min(1_000, delay * 2)) {
    try {
      return await withRetry(attempt, policy, counters);
    } catch (error) {
      if (!isConnectionFailure(error) || Date.now() + delay > deadline) throw error;
      await sleep(delay);
    }
  }
}
