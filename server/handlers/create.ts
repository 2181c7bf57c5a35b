/** <create>: accounts and shares, each child applied on its own, replies in input order. */
import type { AddShares, Attributes, CreateAccount, CreateRequest, InvalidCreateItem } from '../protocol/requests.js';
import { element, errorElement, type ReplyElement } from '../protocol/replies.js';
import type { ExchangeStore } from '../store/exchange-store.js';
import { failureProblem } from './failure.js';
import { detailedProblem, problem } from '../errors.js';

async function createAccount(store: ExchangeStore, item: CreateAccount): Promise<ReplyElement> {
  const echo = [['id', item.accountId]] as const;
  try {
    const created = await store.createAccount(item.accountId, item.balance);
    return created ? element('created', echo) : errorElement(echo, problem('account_exists'));
  } catch (error) {
    return errorElement(echo, failureProblem(error, 'create account'));
  }
}

function sharesEcho(item: AddShares | InvalidCreateItem): Attributes {
  return item.kind === 'invalid'
    ? item.echo
    : [
        ['sym', item.sym],
        ['id', item.accountId],
      ];
}

async function addShares(store: ExchangeStore, item: AddShares): Promise<ReplyElement> {
  const echo = sharesEcho(item);
  try {
    const rejection = await store.addShares(item.accountId, item.sym, item.shares);
    return rejection === null ? element('created', echo) : errorElement(echo, problem(rejection));
  } catch (error) {
    return errorElement(echo, failureProblem(error, 'add shares'));
  }
}

function invalid(item: InvalidCreateItem): ReplyElement {
  return errorElement(item.echo, detailedProblem('invalid_item', item.reason));
}

export async function handleCreate(store: ExchangeStore, request: CreateRequest): Promise<ReplyElement[]> {
  const results: ReplyElement[] = [];
  for (const group of request.groups) {
    if (group.kind === 'account') {
      results.push(group.item.kind === 'invalid' ? invalid(group.item) : await createAccount(store, group.item));
      continue;
    }
    // A null sym means the parser already marked every item invalid.
    if (group.sym !== null) {
      try {
        await store.ensureSymbol(group.sym);
      } catch (error) {
        const failure = failureProblem(error, 'create symbol');
        for (const item of group.items) results.push(errorElement(sharesEcho(item), failure));
        continue;
      }
    }
    for (const item of group.items) {
      results.push(item.kind === 'invalid' ? invalid(item) : await addShares(store, item));
    }
  }
  return results;
}
