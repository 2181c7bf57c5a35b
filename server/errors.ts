/**
 * Every error and rejection the server reports, named by a code. Programs match on
 * codes (handlers, metrics labels, the stress client, tests); the message is the
 * text a client reads on the wire, for people, and stays exactly as it is
 * (docs/protocol.md lists both). The matching functions in SQL return codes too.
 */

/**
 * The one table: each code and its message. null: the message names what was wrong
 * with this request (an attribute, a size, a time limit), so it is made where that is
 * known; the comment gives its shape.
 */
export const ERROR_MESSAGES = {
  // SPEC's rejections: the item was understood and refused; nothing changed.
  unknown_account: 'unknown account',
  account_exists: 'account already exists',
  /** A sell (or grant of shares) of a symbol never created. */
  unknown_symbol: 'unknown symbol',
  insufficient_funds: 'insufficient funds',
  insufficient_shares: 'insufficient shares',
  /** An id unknown, malformed or another account's: one text for all, so ids cannot be probed. */
  unknown_order: 'no such order for this account',
  nothing_open: 'order has nothing open to cancel',

  // Not applied, or not known to be.
  /** Serialization failures outlasted every retry: certainly not applied. */
  not_applied: 'not applied: too many concurrent updates, try again',
  /** The store failed (a lost connection, perhaps mid-COMMIT): the client must query before resending. */
  outcome_unknown: 'internal error: the outcome is unknown; query before retrying',
  /** A request-level failure no handler caught. */
  request_failed: 'internal error: the request could not be completed',
  /** The database failed while running the write and it is known never to commit: safe to send again. */
  write_not_applied: 'not applied: the database failed while running it; nothing was changed, it is safe to send again',
  /** "not applied: it took longer than the N ms one write may hold the exchange ...; nothing was changed" */
  write_too_long: null,
  /** After one order of a request ran past the write time limit, its later orders are not run. */
  not_run_after_time_limit: 'not processed: an earlier order of this request ran past the write time limit',
  /** Items past the reply's element limit are not run. */
  reply_limit: 'not processed: the reply to this request reached its size limit',

  // Refused by the parser.
  /** An item, or the <transactions> account id, failed validation: "amount must not be zero", "missing sym", ... */
  invalid_item: null,
  /** The document was refused whole: "malformed XML: ...", a DOCTYPE, an unknown root, too many items, ... */
  invalid_request: null,

  // Framing: the connection is answered with this error and closed.
  /** "invalid length line: ..." */
  bad_length_line: null,
  /** "request of N bytes exceeds the maximum of M bytes" */
  too_large: null,
  /** "truncated request: connection closed ...", or "empty request: ..." in bare framing. */
  truncated: null,
  /** "request not received in full within N ms" */
  timeout: null,
  /** Another connection took this one's slot, before it sent a request. */
  evicted: 'server at its connection limit: connection closed to make room, before a request arrived',
} as const satisfies Record<string, string | null>;

export type ErrorCode = keyof typeof ERROR_MESSAGES;
/** Codes with one message, always the same. */
export type FixedErrorCode = { [C in ErrorCode]: (typeof ERROR_MESSAGES)[C] extends string ? C : never }[ErrorCode];
/** Codes whose message is made where the detail is known. */
export type DetailedErrorCode = Exclude<ErrorCode, FixedErrorCode>;

/** An error as the server reports it: the code for programs, the message for the wire. */
export type Problem = { readonly code: ErrorCode; readonly message: string };

const FIXED = new Map<FixedErrorCode, Problem>();
const CODE_OF_MESSAGE = new Map<string, FixedErrorCode>();
for (const [code, message] of Object.entries(ERROR_MESSAGES) as Array<[ErrorCode, string | null]>) {
  if (message === null) continue;
  FIXED.set(code as FixedErrorCode, Object.freeze({ code, message }));
  CODE_OF_MESSAGE.set(message, code as FixedErrorCode);
}

export function problem(code: FixedErrorCode): Problem {
  return FIXED.get(code) as Problem;
}

export function detailedProblem(code: DetailedErrorCode, message: string): Problem {
  return { code, message };
}

/**
 * The code of an error text read off the wire, for clients and tests, which see only
 * the text; undefined for a detailed message (or any other text).
 */
export function codeOfMessage(message: string): FixedErrorCode | undefined {
  return CODE_OF_MESSAGE.get(message);
}
