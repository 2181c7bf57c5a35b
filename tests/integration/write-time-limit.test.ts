/**
 * One order sweeping a very deep book, in a batch with other clients' writes: the
 * batch runs past the write time limit (PostgreSQL's statement_timeout, here 400 ms),
 * and rolls back. Only the long order is refused, with a clear error, changing nothing;
 * the others run again without it and get their real outcomes. A sweep within the limit
 * still matches everything it crosses (SPEC).
 */
import { expect } from 'chai';
import type pg from 'pg';
import { findInvariantViolations } from '../../client/invariants.js';
import { createPool } from '../../server/store/pool.js';
import { sendRequest } from '../support/client.js';
import { sleep, waitFor } from '../support/waiting.js';
import { writeLockWaiters } from '../support/write-lock.js';
import { GrantLedger } from '../support/ledger.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults, type ReplyNode } from '../support/xml.js';

const WRITE_TIMEOUT_MS = 400;
/** Resting sells of one share each: about 40 µs of matching per fill, so over a second to sweep. */
const DEPTH = 40_000;
const SELLER = '6100';
const SWEEPER = '6101';
const DEEP = 'DEEP';
const OTHER = 'CALM';

async function send(port: number, xml: string): Promise<ReplyNode[]> {
  return parseResults(await sendRequest(port, xml));
}

type Book = { open: string; orders: string; executions: string; sweeperBalance: string; sweeperShares: string | null };

async function book(pool: pg.Pool): Promise<Book> {
  const result = await pool.query<Book>(`SELECT
      (SELECT coalesce(sum(open_shares), 0)::text FROM orders WHERE sym = '${DEEP}') AS open,
      (SELECT count(*)::text FROM orders WHERE sym = '${DEEP}') AS orders,
      (SELECT count(*)::text FROM executions e JOIN orders o ON o.id = e.sell_order_id WHERE o.sym = '${DEEP}') AS executions,
      (SELECT balance::text FROM accounts WHERE id = '${SWEEPER}') AS "sweeperBalance",
      (SELECT shares::text FROM positions WHERE account_id = '${SWEEPER}' AND sym = '${DEEP}') AS "sweeperShares"`);
  return result.rows[0] as Book;
}

describe('a write that runs past the write time limit', function () {
  this.timeout(120_000);
  let server: TestServer;
  let admin: pg.Pool;
  const grants = new GrantLedger();
  const traders = Array.from({ length: 8 }, (_, index) => String(6200 + index));

  before(async () => {
    server = await startTestServer({ writeLimits: { writeTimeoutMs: WRITE_TIMEOUT_MS } });
    admin = createPool({ databaseUrl: server.database.url, maxConnections: 3 });
    const created = await send(
      server.port,
      `<create><account id="${SELLER}" balance="0"/><account id="${SWEEPER}" balance="10000000"/>` +
        `${traders.map((id) => `<account id="${id}" balance="1000"/>`).join('')}` +
        `<symbol sym="${DEEP}"><account id="${SELLER}">${DEPTH}</account></symbol>` +
        `<symbol sym="${OTHER}">${traders.map((id) => `<account id="${id}">100</account>`).join('')}</symbol></create>`,
    );
    expect(
      created.every((node) => node.name === 'created'),
      JSON.stringify(created),
    ).to.equal(true);
    grants.addCash('10000000');
    for (const _ of traders) {
      grants.addCash('1000');
      grants.addShares(OTHER, '100');
    }
    grants.addShares(DEEP, String(DEPTH));
    // The deep book, written directly (as DEPTH orders of the seller would leave it):
    // one share each at rising prices, the shares taken from the seller's position.
    await admin.query(
      `INSERT INTO orders (id, account_id, sym, amount, limit_price, open_shares)
      SELECT nextval('order_ids'), $1, $2, -1, 10 + i * 0.0001, 1 FROM generate_series(1, $3::int) i`,
      [SELLER, DEEP, DEPTH],
    );
    await admin.query('UPDATE positions SET shares = 0 WHERE account_id = $1 AND sym = $2', [SELLER, DEEP]);
    await admin.query('ANALYZE orders');
  });

  after(async () => {
    await admin?.end();
    await server?.close();
  });

  it('refuses only that write, clearly, changing nothing; the other writes of its batch get their real outcomes', async () => {
    const before = await book(admin);
    // Hold the write lock so that the writes below queue up and form one batch.
    const holder = await admin.connect();
    try {
      await holder.query('BEGIN; LOCK TABLE exchange_write_lock IN EXCLUSIVE MODE');
      const first = send(
        server.port,
        `<transactions id="${traders[0]}"><order sym="${OTHER}" amount="1" limit="1"/></transactions>`,
      );
      await waitFor(
        'the first order to wait for the write lock',
        async () => (await writeLockWaiters(admin)) > 0,
        60_000,
      );
      // Around the sweep, trades among the other accounts: sells resting, buys taking them.
      const requests: Array<[string, string]> = [
        [traders[1] as string, `<order sym="${OTHER}" amount="-5" limit="7"/>`],
        [traders[2] as string, `<order sym="${OTHER}" amount="-5" limit="8"/>`],
        [traders[3] as string, `<order sym="${OTHER}" amount="2" limit="6"/>`],
        [SWEEPER, `<order sym="${DEEP}" amount="${DEPTH}" limit="100"/>`],
        [traders[4] as string, `<order sym="${OTHER}" amount="-1" limit="9"/>`],
        [traders[5] as string, `<order sym="${OTHER}" amount="3" limit="5"/>`],
        [traders[6] as string, `<order sym="${OTHER}" amount="-2" limit="9.5"/>`],
        [traders[7] as string, `<order sym="${OTHER}" amount="-3" limit="10"/>`],
      ];
      const replies = requests.map(([id, item]) =>
        send(server.port, `<transactions id="${id}">${item}</transactions>`),
      );
      while (server.listener.connectionCount < requests.length + 1) await sleep(10);
      await sleep(300);
      await holder.query('COMMIT');
      expect((await first)[0]?.name).to.equal('opened');
      const results = (await Promise.all(replies)).map((nodes) => nodes[0] as ReplyNode);

      const sweep = results[3] as ReplyNode;
      expect(sweep.name, JSON.stringify(sweep)).to.equal('error');
      expect(sweep.attributes).to.deep.equal({ sym: DEEP, amount: String(DEPTH), limit: '100' });
      expect(sweep.text).to.match(
        new RegExp(
          `^not applied: it took longer than the ${WRITE_TIMEOUT_MS} ms one write may hold the exchange .*nothing was changed$`,
        ),
      );
      results.forEach((node, index) => {
        if (index !== 3) expect(node.name, `${requests[index]?.[1]}: ${JSON.stringify(node)}`).to.equal('opened');
      });
      expect(await book(admin), 'the deep book and the sweeper as they were').to.deep.equal(before);
      // The others traded as serial execution says: no fill among these prices (7, 8, 9, 9.5,
      // 10 asked; 6 and 5 bid, and the first order's 1).
      const traded = await admin.query<{ n: string }>(
        `SELECT count(*) AS n FROM executions e JOIN orders o ON o.id = e.buy_order_id WHERE o.sym = '${OTHER}'`,
      );
      expect(traded.rows[0]?.n).to.equal('0');
      expect(await findInvariantViolations(admin, await grants.totals(admin)), 'invariants').to.deep.equal([]);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
    }
  });

  it('alone, it is refused the same way, and the exchange goes on serving writes', async () => {
    const before = await book(admin);
    const [sweep] = await send(
      server.port,
      `<transactions id="${SWEEPER}"><order sym="${DEEP}" amount="${DEPTH / 2}" limit="100"/></transactions>`,
    );
    expect(sweep?.name).to.equal('error');
    expect(sweep?.text).to.match(/^not applied: it took longer than/);
    expect(await book(admin)).to.deep.equal(before);
    const [next] = await send(
      server.port,
      `<transactions id="${traders[1]}"><order sym="${OTHER}" amount="1" limit="7"/></transactions>`,
    );
    expect(next?.name, JSON.stringify(next)).to.equal('opened');
  });

  it('one request runs past the limit at most once: its later orders are not run, its queries and cancels are', async () => {
    const before = await book(admin);
    const [resting] = await send(
      server.port,
      `<transactions id="${SWEEPER}"><order sym="${OTHER}" amount="1" limit="1"/></transactions>`,
    );
    const restingId = resting?.attributes.id as string;
    const sweep = `<order sym="${DEEP}" amount="${DEPTH}" limit="100"/>`;
    const tombstones = async () =>
      Number(
        (await admin.query<{ n: string }>('SELECT count(*) AS n FROM write_batches WHERE order_ids IS NULL')).rows[0]
          ?.n,
      );
    const tombstonesBefore = await tombstones();
    const replies = await send(
      server.port,
      `<transactions id="${SWEEPER}">${sweep}${sweep}<order sym="${OTHER}" amount="1" limit="1"/>` +
        `${sweep.repeat(20)}<query id="${restingId}"/><cancel id="${restingId}"/></transactions>`,
    );
    expect(replies.map((node) => node.name)).to.deep.equal(['error', ...Array(22).fill('error'), 'status', 'canceled']);
    expect(replies[0]?.text).to.match(/^not applied: it took longer than/);
    for (const node of replies.slice(1, 23)) {
      expect(node.text).to.equal('not processed: an earlier order of this request ran past the write time limit');
    }
    expect(replies[2]?.attributes).to.deep.equal({ sym: OTHER, amount: '1', limit: '1' });
    expect(await book(admin)).to.deep.equal(before);
    // Each write that ran past the limit leaves the tombstone of its lookup: one, not 22.
    expect((await tombstones()) - tombstonesBefore, 'writes of this request that ran past the limit').to.equal(1);
  });

  it('a sweep that finishes within the limit still matches everything it crosses', async () => {
    const [sweep] = await send(
      server.port,
      `<transactions id="${SWEEPER}"><order sym="${DEEP}" amount="500" limit="100"/></transactions>`,
    );
    expect(sweep?.name, JSON.stringify(sweep)).to.equal('opened');
    const id = sweep?.attributes.id as string;
    const [status] = await send(server.port, `<transactions id="${SWEEPER}"><query id="${id}"/></transactions>`);
    const executed = status?.children.filter((child) => child.name === 'executed') ?? [];
    expect(executed).to.have.length(500);
    expect(status?.children.some((child) => child.name === 'open')).to.equal(false);
    // Best price first: the cheapest 500 of the book.
    expect(executed[0]?.attributes.price).to.equal('10.0001');
    expect(executed[499]?.attributes.price).to.equal('10.05');
    expect(await findInvariantViolations(admin, await grants.totals(admin)), 'invariants').to.deep.equal([]);
  });
});
