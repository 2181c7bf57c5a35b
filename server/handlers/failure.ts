/** Turns a store failure into the error an item's reply gives; never a false success. */
import { RetriesExhaustedError } from '../store/retry.js';
import { WriteNotAppliedError, WriteTooLongError } from '../store/exchange-store.js';
import { log } from '../log.js';
import { detailedProblem, problem, type Problem } from '../errors.js';

export function failureProblem(error: unknown, what: string): Problem {
  if (error instanceof RetriesExhaustedError) return problem('not_applied');
  // Both are known not to have committed, and say so.
  if (error instanceof WriteTooLongError) return detailedProblem('write_too_long', error.message);
  if (error instanceof WriteNotAppliedError) return problem('write_not_applied');
  log.error('request failed', { what, error: error instanceof Error ? error.message : String(error) });
  // The transaction may have been cut off mid-COMMIT, so its outcome is unknown: say so,
  // so that a client queries before it resends (a resent order could trade twice).
  return problem('outcome_unknown');
}
