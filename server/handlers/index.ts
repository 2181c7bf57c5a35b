/** The dispatcher: a typed request in, the reply elements out, in input order. */
import type { Request } from '../protocol/requests.js';
import type { ReplyElement } from '../protocol/replies.js';
import type { ExchangeStore } from '../store/exchange-store.js';
import { handleCreate } from './create.js';
import { handleTransactions } from './transactions.js';

export function dispatch(store: ExchangeStore, request: Request): Promise<ReplyElement[]> {
  switch (request.kind) {
    case 'create':
      return handleCreate(store, request);
    case 'transactions':
      return handleTransactions(store, request);
  }
}
