/** <create>: accounts and shares, each child applied on its own, replies in input order. */
import type { AddShares, Attributes, CreateAccount, CreateRequest, InvalidCreateItem } from '../protocol/requests.js';
import { element, errorElement, type ReplyElement } from '../protocol/replies.js';
import type { ExchangeStore } from '../store/exchange-store.js';
import { failureReason } from './failure.js';

async function createAccount(store: ExchangeStore, item: CreateAccount): Promise<ReplyElement> {
  const echo = [['id', item.accountId]] as const;
  try {
    const created = await store.createAccount(item.accountId, item.balance);
    return created ? element('created', echo) : errorElement(echo, 'account already exists');
  } catch (error) {
    return errorElement(echo, failureReason(error, 'create account'));
  }
}

function sharesEcho(item: AddShares | InvalidCreateItem): Attributes {
  return item.kind === 'invalid' ? item.echo : [['sym', item.sym], ['id', item.accountId]];
}

async function addShares(store: ExchangeStore, item: AddShares): Promise<ReplyElement> {
  const echo = sharesEcho(item);
  try {
    const problem = await store.addShares(item.accountId, item.sym, item.shares);
    return problem === null ? element('created', echo) : errorElement(echo, problem);
  } catch (error) {
    return errorElement(echo, failureReason(error, 'add shares'));
  }
}

function invalid(item: InvalidCreateItem): ReplyElement {
  return errorElement(item.echo, item.reason);
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
        const reason = failureReason(error, 'create symbol');
        for (const item of group.items) results.push(errorElement(sharesEcho(item), reason));
        continue;
      }
    }
    for (const item of group.items) {
      results.push(item.kind === 'invalid' ? invalid(item) : await addShares(store, item));
    }
  }
  return results;
}
