/** <cancel>: cancel the open part, refund it, and report the fills that stay. */
import type { CancelItem } from '../protocol/requests.js';
import { element, errorElement, type ReplyElement } from '../protocol/replies.js';
import type { ExchangeStore } from '../store/exchange-store.js';
import { failureProblem } from './failure.js';
import { canceledElement, executedElements } from './order-status.js';
import { problem } from '../errors.js';

export async function handleCancel(store: ExchangeStore, accountId: string, item: CancelItem): Promise<ReplyElement> {
  // A malformed id is answered as an unknown one, so ids cannot be probed.
  if (item.orderId === null) return errorElement(item.echo, problem('unknown_order'));
  try {
    const result = await store.cancelOrder(accountId, item.orderId);
    if (result.outcome !== 'canceled') return errorElement(item.echo, problem(result.outcome));
    return element('canceled', item.echo, [
      canceledElement(result.shares, result.time),
      ...executedElements(result.fills),
    ]);
  } catch (error) {
    return errorElement(item.echo, failureProblem(error, 'cancel'));
  }
}
