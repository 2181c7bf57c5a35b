/** <query>: an order's open part (or canceled part) and its fills, oldest first. */
import type { QueryItem } from '../protocol/requests.js';
import { canonicalDecimal } from '../protocol/decimal.js';
import { element, errorElement, type ReplyElement } from '../protocol/replies.js';
import type { ExchangeStore } from '../store/exchange-store.js';
import { failureProblem } from './failure.js';
import { canceledElement, executedElements } from './order-status.js';
import { problem } from '../errors.js';

export async function handleQuery(store: ExchangeStore, accountId: string, item: QueryItem): Promise<ReplyElement> {
  // Malformed, unknown and other accounts' ids get the same answer, so ids cannot be probed.
  if (item.orderId === null) return errorElement(item.echo, problem('unknown_order'));
  try {
    const status = await store.orderStatus(accountId, item.orderId);
    if (status === null) return errorElement(item.echo, problem('unknown_order'));
    const children: ReplyElement[] = [];
    const open = canonicalDecimal(status.openShares);
    if (open !== '0') children.push(element('open', [['shares', open]]));
    else if (status.canceled) children.push(canceledElement(status.canceled.shares, status.canceled.time));
    children.push(...executedElements(status.fills));
    return element('status', item.echo, children);
  } catch (error) {
    return errorElement(item.echo, failureProblem(error, 'query'));
  }
}
