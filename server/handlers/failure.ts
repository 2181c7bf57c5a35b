/** Turns a store failure into the reason an error reply gives; never a false success. */
import { RetriesExhaustedError } from '../store/retry.js';
import { WriteNotAppliedError, WriteTooLongError } from '../store/exchange-store.js';
import { log } from '../log.js';

export function failureReason(error: unknown, what: string): string {
  if (error instanceof RetriesExhaustedError) {
    return 'not applied: too many concurrent updates, try again';
  }
  // Both are known not to have committed, and say so.
  if (error instanceof WriteTooLongError || error instanceof WriteNotAppliedError) return error.message;
  log.error('request failed', { what, error: error instanceof Error ? error.message : String(error) });
  // The transaction may have been cut off mid-COMMIT, so its outcome is unknown: say so,
  // so that a client queries before it resends (a resent order could trade twice).
  return 'internal error: the outcome is unknown; query before retrying';
}
