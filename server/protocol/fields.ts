/** Attribute checks shared by the request parser: one function per SPEC vocabulary word. */
import { checkDecimal } from './decimal.js';

export const MAX_ACCOUNT_ID_DIGITS = 64;
export const MAX_SYMBOL_LENGTH = 64;
/** Order ids are PostgreSQL bigint; anything larger cannot exist. */
const MAX_ORDER_ID = 9223372036854775807n;

export type FieldCheck = string | null;

/** null when valid, otherwise the reason. */
export function accountIdProblem(value: string | undefined): FieldCheck {
  if (value === undefined) return 'missing account id';
  if (value.length === 0) return 'empty account id';
  if (value.length > MAX_ACCOUNT_ID_DIGITS) return `account id longer than ${MAX_ACCOUNT_ID_DIGITS} digits`;
  if (!/^[0-9]+$/.test(value)) return 'account id must be decimal digits';
  return null;
}

export function symbolProblem(value: string | undefined): FieldCheck {
  if (value === undefined) return 'missing sym';
  if (value.length === 0) return 'empty sym';
  if (value.length > MAX_SYMBOL_LENGTH) return `sym longer than ${MAX_SYMBOL_LENGTH} characters`;
  if (!/^[A-Za-z0-9]+$/.test(value)) return 'sym must be ASCII letters and digits';
  return null;
}

export function balanceProblem(value: string | undefined): FieldCheck {
  if (value === undefined) return 'missing balance';
  const check = checkDecimal(value);
  if (!check.ok) return `balance ${check.reason}`;
  if (check.negative) return 'balance must not be negative';
  return null;
}

export function sharesProblem(value: string | undefined): FieldCheck {
  if (value === undefined || value.length === 0) return 'missing number of shares';
  const check = checkDecimal(value);
  if (!check.ok) return `shares ${check.reason}`;
  if (check.negative || check.zero) return 'shares must be positive';
  return null;
}

export function amountProblem(value: string | undefined): FieldCheck {
  if (value === undefined) return 'missing amount';
  const check = checkDecimal(value);
  if (!check.ok) return `amount ${check.reason}`;
  if (check.zero) return 'amount must not be zero';
  return null;
}

export function limitProblem(value: string | undefined): FieldCheck {
  if (value === undefined) return 'missing limit';
  const check = checkDecimal(value);
  if (!check.ok) return `limit ${check.reason}`;
  if (check.negative || check.zero) return 'limit must be positive';
  return null;
}

/** Order ids are positive integers; a malformed one is reported like an unknown one (no probing). */
export function isPossibleOrderId(value: string | undefined): value is string {
  if (value === undefined || value.length > MAX_ACCOUNT_ID_DIGITS || !/^[0-9]+$/.test(value)) return false;
  const id = BigInt(value);
  return id > 0n && id <= MAX_ORDER_ID;
}
