/** <order>: reserve, open and match atomically (the store does it in one transaction). */
import type { OrderItem } from '../protocol/requests.js';
import { element, errorElement, type ReplyElement } from '../protocol/replies.js';
import { WriteTooLongError, type ExchangeStore } from '../store/exchange-store.js';
import { failureProblem } from './failure.js';
import { problem } from '../errors.js';
import { metrics } from '../observability/metrics.js';

/**
 * What the orders of one request may still cost. An order refused for running past the
 * write time limit changed nothing, so the same order again would cost the same: after
 * one, the request's later orders are not run, and one request holds the exchange's
 * write lock past the limit at most once (twice the limit: in its batch, then alone).
 */
export type OrderBudget = { timedOut: boolean };

export async function handleOrder(
  store: ExchangeStore,
  accountId: string,
  item: OrderItem,
  budget: OrderBudget = { timedOut: false },
): Promise<ReplyElement> {
  if (budget.timedOut) return errorElement(item.echo, problem('not_run_after_time_limit'));
  try {
    const result = await store.placeOrder(accountId, item.sym, item.amount, item.limit);
    if (!result.opened) return errorElement(item.echo, problem(result.rejection));
    metrics.fills.inc(result.fills);
    return element('opened', [...item.echo, ['id', result.orderId]]);
  } catch (error) {
    if (error instanceof WriteTooLongError) budget.timedOut = true;
    return errorElement(item.echo, failureProblem(error, 'order'));
  }
}
