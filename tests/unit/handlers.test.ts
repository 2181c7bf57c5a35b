/**
 * The handlers' own logic against an in-memory store (tests/support/fake-store.ts):
 * echoes, error codes and their messages, which store calls are made and which are not.
 * Matching and durability are the database's, tested in tests/integration.
 */
import { expect } from 'chai';
import { dispatch } from '../../server/handlers/index.js';
import { MAX_REPLY_ELEMENTS } from '../../server/handlers/transactions.js';
import { ERROR_MESSAGES } from '../../server/errors.js';
import type { ReplyElement } from '../../server/protocol/replies.js';
import type {
  Attributes,
  CreateRequest,
  TransactionItem,
  TransactionsRequest,
} from '../../server/protocol/requests.js';
import { WriteNotAppliedError, WriteTooLongError } from '../../server/store/exchange-store.js';
import { RetriesExhaustedError } from '../../server/store/retry.js';
import { FakeExchangeStore } from '../support/fake-store.js';

function transactions(accountId: string | null, items: TransactionItem[], accountIdProblem: string | null = null) {
  const request: TransactionsRequest = {
    kind: 'transactions',
    accountId,
    accountEcho: [['id', accountId ?? 'x!']],
    accountIdProblem,
    items,
  };
  return request;
}

const order = (sym: string, amount: string, limit: string): TransactionItem => ({
  kind: 'order',
  sym,
  amount,
  limit,
  echo: [
    ['sym', sym],
    ['amount', amount],
    ['limit', limit],
  ],
});
const query = (id: string | null, sent = id ?? 'bogus'): TransactionItem => ({
  kind: 'query',
  orderId: id,
  echo: [['id', sent]],
});
const cancel = (id: string | null, sent = id ?? 'bogus'): TransactionItem => ({
  kind: 'cancel',
  orderId: id,
  echo: [['id', sent]],
});

/** name, attributes, then text or children: the parts a client reads. */
function shape(result: ReplyElement): unknown {
  return {
    name: result.name,
    attributes: result.attributes,
    ...(result.code === undefined ? {} : { code: result.code, text: result.text }),
    ...(result.children === undefined ? {} : { children: result.children.map(shape) }),
  };
}

function error(attributes: Attributes, code: keyof typeof ERROR_MESSAGES, text: string | null = ERROR_MESSAGES[code]) {
  return { name: 'error', attributes, code, text };
}

async function storeWithAccount(id = '1', balance = '1000'): Promise<FakeExchangeStore> {
  const store = new FakeExchangeStore();
  await store.createAccount(id, balance);
  store.calls.length = 0;
  return store;
}

describe('handlers (against an in-memory store)', () => {
  describe('<create>', () => {
    it('answers each child in input order, echoing its attributes, with a code-named error where refused', async () => {
      const store = new FakeExchangeStore();
      const request: CreateRequest = {
        kind: 'create',
        groups: [
          { kind: 'account', item: { kind: 'account', accountId: '7', balance: '100' } },
          { kind: 'account', item: { kind: 'account', accountId: '7', balance: '5' } },
          { kind: 'account', item: { kind: 'invalid', echo: [['id', '-1']], reason: 'id must be digits' } },
          {
            kind: 'symbol',
            sym: 'SPY',
            items: [
              { kind: 'shares', sym: 'SPY', accountId: '7', shares: '10' },
              { kind: 'shares', sym: 'SPY', accountId: '8', shares: '10' },
              { kind: 'invalid', echo: [['id', '7']], reason: 'shares must be positive' },
            ],
          },
        ],
      };
      const results = await dispatch(store, request);
      expect(results.map(shape)).to.deep.equal([
        { name: 'created', attributes: [['id', '7']] },
        error([['id', '7']], 'account_exists'),
        error([['id', '-1']], 'invalid_item', 'id must be digits'),
        {
          name: 'created',
          attributes: [
            ['sym', 'SPY'],
            ['id', '7'],
          ],
        },
        error(
          [
            ['sym', 'SPY'],
            ['id', '8'],
          ],
          'unknown_account',
        ),
        error([['id', '7']], 'invalid_item', 'shares must be positive'),
      ]);
      // The second account was refused without changing the first one's balance.
      expect(store.accounts.get('7')).to.equal('100');
    });

    it('a symbol that could not be created fails every grant of it, and none of them runs', async () => {
      const store = await storeWithAccount('7');
      store.failNext('ensureSymbol', new RetriesExhaustedError(100, new Error('40001')));
      const results = await dispatch(store, {
        kind: 'create',
        groups: [
          {
            kind: 'symbol',
            sym: 'SPY',
            items: [
              { kind: 'shares', sym: 'SPY', accountId: '7', shares: '1' },
              { kind: 'shares', sym: 'SPY', accountId: '7', shares: '2' },
            ],
          },
          { kind: 'account', item: { kind: 'account', accountId: '9', balance: '1' } },
        ],
      });
      expect(results.map((result) => result.code ?? result.name)).to.deep.equal([
        'not_applied',
        'not_applied',
        'created',
      ]);
      expect(store.callsOf('addShares')).to.deep.equal([]);
    });
  });

  describe('<transactions>', () => {
    it('an unknown account: every child is answered with its own echo and nothing runs', async () => {
      const store = new FakeExchangeStore();
      const results = await dispatch(store, transactions('42', [order('SPY', '5', '10'), query('1'), cancel('1')]));
      expect(results.map(shape)).to.deep.equal([
        error(
          [
            ['sym', 'SPY'],
            ['amount', '5'],
            ['limit', '10'],
          ],
          'unknown_account',
        ),
        error([['id', '1']], 'unknown_account'),
        error([['id', '1']], 'unknown_account'),
      ]);
      expect(store.calls.map((call) => call.method)).to.deep.equal(['accountExists']);
    });

    it('no children: <results/> for an existing account, one error naming an unknown one', async () => {
      const store = await storeWithAccount('1');
      expect(await dispatch(store, transactions('1', []))).to.deep.equal([]);
      expect((await dispatch(store, transactions('2', []))).map(shape)).to.deep.equal([
        error([['id', '2']], 'unknown_account'),
      ]);
    });

    it('an invalid account id: each child gets the reason, and the store is not asked', async () => {
      const store = new FakeExchangeStore();
      const results = await dispatch(store, transactions(null, [query('1')], 'id must be digits'));
      expect(results.map(shape)).to.deep.equal([error([['id', '1']], 'invalid_item', 'id must be digits')]);
      expect(store.calls).to.deep.equal([]);
    });

    it('a failed account lookup is every child’s answer (not a false "unknown account")', async () => {
      const store = await storeWithAccount('1');
      store.failNext('accountExists', new WriteNotAppliedError(new Error('connection lost')));
      const results = await dispatch(store, transactions('1', [order('SPY', '1', '1'), query('1')]));
      expect(results.map((result) => result.code)).to.deep.equal(['write_not_applied', 'write_not_applied']);
      expect(store.callsOf('placeOrder')).to.deep.equal([]);
    });

    it('an opened order echoes its attributes and adds its id; a rejection is its code’s message', async () => {
      const store = await storeWithAccount('1');
      store.rejectNextOrder('insufficient_funds');
      const results = await dispatch(store, transactions('1', [order('SPY', '-5', '10'), order('SPY', '3', '2.5')]));
      expect(results.map(shape)).to.deep.equal([
        error(
          [
            ['sym', 'SPY'],
            ['amount', '-5'],
            ['limit', '10'],
          ],
          'insufficient_funds',
        ),
        {
          name: 'opened',
          attributes: [
            ['sym', 'SPY'],
            ['amount', '3'],
            ['limit', '2.5'],
            ['id', '1'],
          ],
        },
      ]);
    });

    it('after an order runs past the write time limit, the request’s later orders are not run; its queries are', async () => {
      const store = await storeWithAccount('1');
      await store.placeOrder('1', 'SPY', '1', '1');
      store.calls.length = 0;
      store.failNext('placeOrder', new WriteTooLongError(5_000));
      const results = await dispatch(
        store,
        transactions('1', [order('SPY', '1', '1'), order('SPY', '2', '1'), query('1'), order('SPY', '3', '1')]),
      );
      expect(results.map((result) => result.code ?? result.name)).to.deep.equal([
        'write_too_long',
        'not_run_after_time_limit',
        'status',
        'not_run_after_time_limit',
      ]);
      expect(results[0]?.text).to.equal(new WriteTooLongError(5_000).message);
      expect(store.callsOf('placeOrder')).to.have.length(1);
      // The budget is the request's: the next request's orders run again.
      const next = await dispatch(store, transactions('1', [order('SPY', '4', '1')]));
      expect(next[0]?.name).to.equal('opened');
    });

    it('store failures: known not applied says so; anything else is "outcome unknown", never a false success', async () => {
      const store = await storeWithAccount('1');
      store.failNext('placeOrder', new RetriesExhaustedError(100, new Error('40001')));
      store.failNext('placeOrder', new WriteNotAppliedError(new Error('deadlock')));
      store.failNext('placeOrder', new Error('Connection terminated unexpectedly'));
      const results = await dispatch(
        store,
        transactions('1', [order('SPY', '1', '1'), order('SPY', '1', '1'), order('SPY', '1', '1')]),
      );
      expect(results.map(shape)).to.deep.equal(
        ['not_applied', 'write_not_applied', 'outcome_unknown'].map((code) =>
          error(
            [
              ['sym', 'SPY'],
              ['amount', '1'],
              ['limit', '1'],
            ],
            code as keyof typeof ERROR_MESSAGES,
          ),
        ),
      );
    });

    it('query: open part, canceled part and fills, with canonical decimals; ids of others are unknown', async () => {
      const store = await storeWithAccount('1');
      await store.createAccount('2', '0');
      await store.placeOrder('1', 'SPY', '10', '5');
      await store.placeOrder('1', 'SPY', '-4', '5');
      await store.placeOrder('2', 'SPY', '1', '5');
      store.fill('1', [{ shares: '4.50', price: '5.000', time: '1700000001' }], '5.500');
      await store.cancelOrder('1', '2');
      const results = await dispatch(store, transactions('1', [query('1'), query('2'), query('3'), query(null, 'x')]));
      expect(results.map(shape)).to.deep.equal([
        {
          name: 'status',
          attributes: [['id', '1']],
          children: [
            { name: 'open', attributes: [['shares', '5.5']] },
            {
              name: 'executed',
              attributes: [
                ['shares', '4.5'],
                ['price', '5'],
                ['time', '1700000001'],
              ],
            },
          ],
        },
        {
          name: 'status',
          attributes: [['id', '2']],
          children: [
            {
              name: 'canceled',
              attributes: [
                ['shares', '4'],
                ['time', '1700000000'],
              ],
            },
          ],
        },
        error([['id', '3']], 'unknown_order'),
        error([['id', 'x']], 'unknown_order'),
      ]);
      // A malformed id never reaches the store.
      expect(store.callsOf('orderStatus').map(([, id]) => id)).to.deep.equal(['1', '2', '3']);
    });

    it('cancel: the canceled part and the fills that stay; a second cancel has nothing open', async () => {
      const store = await storeWithAccount('1');
      await store.placeOrder('1', 'SPY', '10', '5');
      store.fill('1', [{ shares: '3', price: '4.5', time: '1700000005' }], '7');
      const results = await dispatch(store, transactions('1', [cancel('1'), cancel('1'), cancel('9'), cancel(null)]));
      expect(results.map(shape)).to.deep.equal([
        {
          name: 'canceled',
          attributes: [['id', '1']],
          children: [
            {
              name: 'canceled',
              attributes: [
                ['shares', '7'],
                ['time', '1700000000'],
              ],
            },
            {
              name: 'executed',
              attributes: [
                ['shares', '3'],
                ['price', '4.5'],
                ['time', '1700000005'],
              ],
            },
          ],
        },
        error([['id', '1']], 'nothing_open'),
        error([['id', '9']], 'unknown_order'),
        error([['id', 'bogus']], 'unknown_order'),
      ]);
      expect(store.callsOf('cancelOrder')).to.have.length(3);
    });

    it('items past the reply element limit are not run', async () => {
      const store = await storeWithAccount('1');
      await store.placeOrder('1', 'SPY', '1', '1');
      const fills = Array.from({ length: MAX_REPLY_ELEMENTS }, () => ({ shares: '1', price: '1', time: '1' }));
      store.fill('1', fills, '0');
      store.calls.length = 0;
      const results = await dispatch(store, transactions('1', [query('1'), order('SPY', '1', '1'), cancel('1')]));
      expect(results.map((result) => result.code ?? result.name)).to.deep.equal([
        'status',
        'reply_limit',
        'reply_limit',
      ]);
      expect(results[1]?.text).to.equal(ERROR_MESSAGES.reply_limit);
      expect(store.calls.map((call) => call.method)).to.deep.equal(['accountExists', 'orderStatus']);
    });
  });
});
