/**
 * Exact decimal strings. Money and share counts never become a JavaScript
 * number: the wire carries text, PostgreSQL NUMERIC does the arithmetic, and
 * this module only checks shape and writes canonical text.
 */

/** Bounds that keep a hostile attribute from becoming a huge NUMERIC. */
export const MAX_INTEGER_DIGITS = 24;
export const MAX_FRACTION_DIGITS = 16;
const MAX_DECIMAL_TEXT = 64;

const DECIMAL_SHAPE = /^(-?)(\d+)(?:\.(\d+))?$/;

export type DecimalCheck = { ok: true; negative: boolean; zero: boolean } | { ok: false; reason: string };

/** Checks that `text` is a plain decimal (optional '-', digits, optional fraction): no '+', exponent or spaces. */
export function checkDecimal(text: string): DecimalCheck {
  if (text.length === 0) return { ok: false, reason: 'is empty' };
  if (text.length > MAX_DECIMAL_TEXT) return { ok: false, reason: 'is too long' };
  const match = DECIMAL_SHAPE.exec(text);
  if (!match) return { ok: false, reason: 'is not a plain decimal number' };
  const integerDigits = (match[2] ?? '').replace(/^0+/, '');
  const fractionDigits = (match[3] ?? '').replace(/0+$/, '');
  if (integerDigits.length > MAX_INTEGER_DIGITS) {
    return { ok: false, reason: `has more than ${MAX_INTEGER_DIGITS} integer digits` };
  }
  if (fractionDigits.length > MAX_FRACTION_DIGITS) {
    return { ok: false, reason: `has more than ${MAX_FRACTION_DIGITS} decimal places` };
  }
  const zero = integerDigits.length === 0 && fractionDigits.length === 0;
  return { ok: true, negative: match[1] === '-' && !zero, zero };
}

/**
 * Canonical form of a decimal the server computed (PostgreSQL NUMERIC text):
 * no exponent, no '+', no leading zeros, no trailing zeros after the point.
 */
export function canonicalDecimal(text: string): string {
  const match = DECIMAL_SHAPE.exec(text.trim());
  if (!match) throw new RangeError(`not a decimal: ${JSON.stringify(text)}`);
  const integer = (match[2] ?? '').replace(/^0+(?=\d)/, '');
  const fraction = (match[3] ?? '').replace(/0+$/, '');
  const zero = /^0*$/.test(integer) && fraction.length === 0;
  const sign = match[1] === '-' && !zero ? '-' : '';
  return fraction.length > 0 ? `${sign}${integer}.${fraction}` : `${sign}${integer}`;
}

/** Absolute value of a decimal string, canonical. */
export function absDecimal(text: string): string {
  const canonical = canonicalDecimal(text);
  return canonical.startsWith('-') ? canonical.slice(1) : canonical;
}
