/**
 * Order-status reads are batched: lookups that arrive together travel as one
 * statement. Each must still get exactly its own answer (its own order, never
 * another account's, null for an unknown id), as if it had been read alone.
 */
import { expect } from 'chai';
import { metrics } from '../../server/observability/metrics.js';
import type { OrderStatus } from '../../server/store/exchange-store.js';
import { sendOnce } from '../support/client.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults } from '../support/xml.js';

async function batchesSoFar(): Promise<number> {
  const metric = await metrics.readBatchSize.get();
  return metric.values.find((value) => value.metricName === 'exchange_read_batch_size_count')?.value ?? 0;
}

describe('batched order-status reads', function () {
  this.timeout(60_000);
  let server: TestServer;
  const orderIds: Record<string, string[]> = { '41': [], '42': [] };

  before(async () => {
    server = await startTestServer({ framing: 'length' });
    const created = parseResults(
      await sendOnce(
        server.port,
        `<create><account id="41" balance="100000"/><account id="42" balance="100000"/>
      <symbol sym="RB"><account id="41">1000</account><account id="42">1000</account></symbol></create>`,
      ),
    );
    expect(created.map((node) => node.name)).to.deep.equal(['created', 'created', 'created', 'created']);
    // Sells by 41 at 10..14, buys by 42 crossing some of them: open, partly filled and filled orders.
    for (const [account, orders] of [
      [
        '41',
        [
          '<order sym="RB" amount="-5" limit="10"/>',
          '<order sym="RB" amount="-5" limit="11"/>',
          '<order sym="RB" amount="-5" limit="14"/>',
        ],
      ],
      [
        '42',
        [
          '<order sym="RB" amount="7" limit="11"/>',
          '<order sym="RB" amount="3" limit="9"/>',
          '<order sym="RB" amount="2" limit="12"/>',
        ],
      ],
    ] as const) {
      const replies = parseResults(
        await sendOnce(server.port, `<transactions id="${account}">${orders.join('')}</transactions>`),
      );
      for (const reply of replies) {
        expect(reply.name).to.equal('opened');
        orderIds[account]?.push(reply.attributes.id as string);
      }
    }
    // One canceled order as well.
    const canceled = parseResults(
      await sendOnce(server.port, `<transactions id="41"><cancel id="${orderIds['41']?.[2]}"/></transactions>`),
    );
    expect(canceled[0]?.name).to.equal('canceled');
  });

  after(async () => server?.close());

  it("lookups read together get what each reads alone: own orders, never another account's, null for unknown ids", async () => {
    const lookups: Array<[account: string, orderId: string]> = [];
    for (let round = 0; round < 20; round++) {
      for (const owner of ['41', '42'] as const) {
        const other = owner === '41' ? '42' : '41';
        for (const id of orderIds[owner] ?? []) lookups.push([owner, id], [other, id]);
      }
      lookups.push(['41', '999999999'], ['43', String(orderIds['41']?.[0])]);
    }
    const alone: Array<OrderStatus | null> = [];
    for (const [account, id] of lookups) alone.push(await server.store.orderStatus(account, id));
    // The sequential reads saw fills, a cancel and nulls: the comparison below means something.
    expect(alone.filter((status) => status === null)).to.have.length(lookups.length / 2 + 20);
    expect(alone.some((status) => (status?.fills.length ?? 0) > 1)).to.equal(true);
    expect(alone.some((status) => status?.canceled !== null && status !== null)).to.equal(true);

    const batchesBefore = await batchesSoFar();
    const together = await Promise.all(lookups.map(([account, id]) => server.store.orderStatus(account, id)));
    const batches = (await batchesSoFar()) - batchesBefore;
    expect(together).to.deep.equal(alone);
    // Sent at once, they share statements: far fewer statements than lookups.
    expect(batches).to.be.greaterThan(0);
    expect(batches).to.be.lessThan(lookups.length / 4);
  });
});
