/** The children of <status> and <canceled> replies, shared by query and cancel. */
import { canonicalDecimal } from '../protocol/decimal.js';
import { element, type ReplyElement } from '../protocol/replies.js';
import type { Fill } from '../store/exchange-store.js';

export function canceledElement(shares: string, time: string): ReplyElement {
  return element('canceled', [
    ['shares', canonicalDecimal(shares)],
    ['time', time],
  ]);
}

export function executedElements(fills: readonly Fill[]): ReplyElement[] {
  return fills.map((fill) =>
    element('executed', [
      ['shares', canonicalDecimal(fill.shares)],
      ['price', canonicalDecimal(fill.price)],
      ['time', fill.time],
    ]),
  );
}
