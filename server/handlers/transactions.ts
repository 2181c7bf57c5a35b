/** <transactions id>: children run in document order, each its own transaction. */
import type { TransactionItem, TransactionsRequest } from '../protocol/requests.js';
import { errorElement, type ReplyElement } from '../protocol/replies.js';
import type { ExchangeStore } from '../store/exchange-store.js';
import { handleCancel } from './cancel.js';
import { failureProblem } from './failure.js';
import { detailedProblem, problem, type Problem } from '../errors.js';
import { handleOrder, type OrderBudget } from './order.js';
import { handleQuery } from './query.js';

/** About 100 bytes each: keeps one reply to a few megabytes. */
export const MAX_REPLY_ELEMENTS = 50_000;

type ValidItem = Exclude<TransactionItem, { kind: 'invalid' }>;

function runItem(store: ExchangeStore, accountId: string, item: ValidItem, budget: OrderBudget): Promise<ReplyElement> {
  switch (item.kind) {
    case 'order':
      return handleOrder(store, accountId, item, budget);
    case 'query':
      return handleQuery(store, accountId, item);
    case 'cancel':
      return handleCancel(store, accountId, item);
  }
}

export async function handleTransactions(store: ExchangeStore, request: TransactionsRequest): Promise<ReplyElement[]> {
  // Why no child can run, if none can: the account id is invalid or unknown, or the lookup failed.
  let accountProblem: Problem | null =
    request.accountIdProblem === null ? null : detailedProblem('invalid_item', request.accountIdProblem);
  if (accountProblem === null && request.accountId !== null) {
    try {
      // Accounts are never deleted, so one check covers every child.
      if (!(await store.accountExists(request.accountId))) accountProblem = problem('unknown_account');
    } catch (error) {
      accountProblem = failureProblem(error, 'account lookup');
    }
  }
  // SPEC: no children is <results/> for an existing account, as <create/> is, and
  // one error naming the account otherwise.
  if (request.items.length === 0) {
    return accountProblem === null && request.accountId !== null
      ? []
      : [errorElement(request.accountEcho, accountProblem ?? problem('unknown_account'))];
  }
  const results: ReplyElement[] = [];
  let replyElements = 0;
  const budget: OrderBudget = { timedOut: false };
  for (const item of request.items) {
    if (replyElements >= MAX_REPLY_ELEMENTS) {
      // Many queries of orders with many fills would make a small request build a huge reply.
      results.push(errorElement(item.echo, problem('reply_limit')));
    } else if (accountProblem !== null || request.accountId === null) {
      results.push(errorElement(item.echo, accountProblem ?? problem('unknown_account')));
    } else if (item.kind === 'invalid') {
      results.push(errorElement(item.echo, detailedProblem('invalid_item', item.reason)));
    } else {
      results.push(await runItem(store, request.accountId, item, budget));
    }
    replyElements += 1 + (results[results.length - 1]?.children?.length ?? 0);
  }
  return results;
}
