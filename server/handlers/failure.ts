/** Turns a store failure into the error an item's reply gives; never a false success. */
import { RetriesExhaustedError } from '../store/retry.js';
import { log } from '../log.js';
import { problem, type Problem } from '../errors.js';

export function failureProblem(error: unknown, what: string): Problem {
  if (error instanceof RetriesExhaustedError) return problem('not_applied');
  log.error('request failed', { what, error: error instanceof Error ? error.message : String(error) });
  // The transaction may have been cut off mid-COMMIT, so its outcome is unknown: say so,
  // so that a client queries before it resends (a resent order could trade twice).
  return problem('outcome_unknown');
}
