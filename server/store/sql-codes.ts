/**
 * The one place SQL's answers become codes: the matching functions
 * (schema/002_matching.sql) return codes of server/errors.ts, and one outside what
 * the caller expects is a bug, never a reply.
 */
import type { ErrorCode } from '../errors.js';
import type { AddSharesRejection, CancelRejection, OrderRejection } from './exchange-store.js';

export function codeFromSql<Code extends ErrorCode>(value: string | null, expected: readonly Code[]): Code {
  const code = expected.find((each) => each === value);
  if (code === undefined)
    throw new Error(`schema/002_matching.sql returned ${JSON.stringify(value)}, not one of ${expected.join(', ')}`);
  return code;
}
export const ORDER_REJECTIONS: readonly OrderRejection[] = [
  'unknown_account',
  'unknown_symbol',
  'insufficient_funds',
  'insufficient_shares',
];
export const CANCEL_REJECTIONS: readonly CancelRejection[] = ['unknown_order', 'nothing_open'];
export const ADD_SHARES_REJECTIONS: readonly AddSharesRejection[] = ['unknown_account', 'unknown_symbol'];
