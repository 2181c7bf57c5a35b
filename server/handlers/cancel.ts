/** <cancel>: cancel the open part, refund it, and report the fills that stay. */
import type { CancelItem } from '../protocol/requests.js';
import { element, errorElement, type ReplyElement } from '../protocol/replies.js';
import type { ExchangeStore } from '../store/exchange-store.js';
import { failureReason } from './failure.js';
import { UNKNOWN_ORDER, canceledElement, executedElements } from './order-status.js';

export async function handleCancel(store: ExchangeStore, accountId: string, item: CancelItem): Promise<ReplyElement> {
  if (item.orderId === null) return errorElement(item.echo, UNKNOWN_ORDER);
  try {
    const result = await store.cancelOrder(accountId, item.orderId);
    if (result.outcome !== 'canceled') {
      return errorElement(item.echo, result.outcome === 'nothing open' ? 'order has nothing open to cancel' : UNKNOWN_ORDER);
    }
    return element('canceled', item.echo, [canceledElement(result.shares, result.time), ...executedElements(result.fills)]);
  } catch (error) {
    return errorElement(item.echo, failureReason(error, 'cancel'));
  }
}
