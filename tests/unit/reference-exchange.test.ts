/** The reference model (tests/support/reference-exchange.ts) on SPEC's own examples, before it judges the server. */
import { expect } from 'chai';
import { ReferenceExchange } from '../support/reference-exchange.js';

function exchange(): ReferenceExchange<number> {
  const model = new ReferenceExchange<number>();
  model.create([
    { kind: 'account', id: '1', balance: '1000000' },
    { kind: 'account', id: '2', balance: '100' },
    { kind: 'symbol', sym: 'X', grants: [{ id: '1', shares: '10000' }] },
  ]);
  return model;
}

describe('the reference model', () => {
  it('follows the worked example of SPEC', () => {
    const model = exchange();
    const orders: Array<[string, string]> = [
      ['300', '125'],
      ['-100', '130'],
      ['200', '127'],
      ['-500', '128'],
      ['-200', '140'],
      ['400', '125'],
      ['-400', '124'],
    ];
    const opened = model.transactions(
      '1',
      orders.map(([amount, limit]) => ({ kind: 'order', sym: 'X', amount, limit })),
      0,
    );
    expect(opened.map((reply) => reply.attributes.id)).to.deep.equal(['1', '2', '3', '4', '5', '6', '7']);
    expect(
      model.transactions(
        '1',
        ['1', '7', '6'].map((id) => ({ kind: 'query', id })),
        0,
      ),
    ).to.deep.equal([
      {
        name: 'status',
        attributes: { id: '1' },
        parts: [
          { name: 'open', shares: '100' },
          { name: 'executed', shares: '200', price: '125', time: 0 },
        ],
      },
      {
        name: 'status',
        attributes: { id: '7' },
        parts: [
          { name: 'executed', shares: '200', price: '127', time: 0 },
          { name: 'executed', shares: '200', price: '125', time: 0 },
        ],
      },
      { name: 'status', attributes: { id: '6' }, parts: [{ name: 'open', shares: '400' }] },
    ]);
  });

  it('refunds a buy filled below its limit, and its open part once when canceled', () => {
    const model = exchange();
    model.transactions('1', [{ kind: 'order', sym: 'X', amount: '-2', limit: '10' }], 1);
    model.transactions('2', [{ kind: 'order', sym: 'X', amount: '5', limit: '12' }], 2);
    // Reserved 60, paid 2 x 10, got 2 x 2 back: 100 - 60 + 4 = 44, with 3 x 12 still reserved.
    expect(model.state().balances['2']).to.equal('44');
    expect(
      model.transactions(
        '2',
        [
          { kind: 'cancel', id: '2' },
          { kind: 'cancel', id: '2' },
        ],
        3,
      ),
    ).to.deep.equal([
      {
        name: 'canceled',
        attributes: { id: '2' },
        parts: [
          { name: 'canceled', shares: '3', time: 3 },
          { name: 'executed', shares: '2', price: '10', time: 2 },
        ],
      },
      { name: 'error', attributes: { id: '2' }, rejection: 'nothing open' },
    ]);
    expect(model.state().balances['2']).to.equal('80');
    expect(model.state().positions['2/X']).to.equal('2');
  });

  it("hides other accounts' orders, and opens a buy of a symbol nobody created", () => {
    const model = exchange();
    model.transactions('1', [{ kind: 'order', sym: 'X', amount: '-1', limit: '10' }], 1);
    expect(
      model
        .transactions(
          '2',
          [
            { kind: 'query', id: '1' },
            { kind: 'cancel', id: '1' },
            { kind: 'query', id: '99' },
          ],
          2,
        )
        .map((reply) => (reply.name === 'error' ? reply.rejection : reply.name)),
    ).to.deep.equal(['unknown order', 'unknown order', 'unknown order']);
    expect(model.transactions('2', [{ kind: 'order', sym: 'NEW', amount: '-1', limit: '1' }], 3)[0]).to.include({
      name: 'error',
      rejection: 'unknown symbol',
    });
    expect(model.transactions('2', [{ kind: 'order', sym: 'NEW', amount: '1', limit: '1' }], 3)[0]).to.include({
      name: 'opened',
    });
    expect(model.state().symbols).to.deep.equal(['NEW', 'X']);
    expect(model.transactions('2', [], 4)).to.deep.equal([]);
    expect(model.transactions('3', [], 4)).to.deep.equal([
      { name: 'error', attributes: { id: '3' }, rejection: 'no children' },
    ]);
  });
});
