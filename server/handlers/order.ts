/** <order>: reserve, open and match atomically (the store does it in one transaction). */
import type { OrderItem } from '../protocol/requests.js';
import { element, errorElement, type ReplyElement } from '../protocol/replies.js';
import type { ExchangeStore } from '../store/exchange-store.js';
import { failureProblem } from './failure.js';
import { problem } from '../errors.js';
import { metrics } from '../observability/metrics.js';

export async function handleOrder(store: ExchangeStore, accountId: string, item: OrderItem): Promise<ReplyElement> {
  try {
    const result = await store.placeOrder(accountId, item.sym, item.amount, item.limit);
    if (!result.opened) return errorElement(item.echo, problem(result.rejection));
    metrics.fills.inc(result.fills);
    return element('opened', [...item.echo, ['id', result.orderId]]);
  } catch (error) {
    return errorElement(item.echo, failureProblem(error, 'order'));
  }
}
