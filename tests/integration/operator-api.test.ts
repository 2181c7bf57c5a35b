/**
 * The operator API (server/admin/api.ts) against a real server: orders placed
 * over TCP, then every endpoint's JSON checked exactly (price order, aggregation
 * by price, canonical exact decimals, privacy of accounts), and, after a random
 * run, every answer compared with a plain SQL query of the same data.
 */
import { expect } from 'chai';
import { sendRequest } from '../support/client.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { getJson, startTestOperationsPort, type TestOperationsPort } from '../support/operator-api.js';
import { seededRandom } from '../../client/random.js';

const TOKEN = 'test-operator-token-0123456789abcdef';

function idOf(reply: string): string {
  const id = /<opened [^>]*id="(\d+)"/.exec(reply)?.[1];
  if (!id) throw new Error(`no order opened: ${reply}`);
  return id;
}

describe('operator API (HTTP, read-only)', function () {
  this.timeout(60_000);
  let server: TestServer;
  let api: TestOperationsPort;
  const order = async (account: string, sym: string, amount: string, limit: string) =>
    idOf(
      await sendRequest(
        server.port,
        `<transactions id="${account}"><order sym="${sym}" amount="${amount}" limit="${limit}"/></transactions>`,
      ),
    );
  const ids: Record<string, string> = {};
  let started = 0;

  before(async () => {
    server = await startTestServer();
    api = await startTestOperationsPort(server.database.url, TOKEN);
    started = Math.floor(Date.now() / 1000);
    await sendRequest(
      server.port,
      `<create><account id="1" balance="100000"/><account id="2" balance="0"/>
      <symbol sym="X"><account id="2">1000</account></symbol><symbol sym="Y"><account id="2">500</account></symbol></create>`,
    );
    ids.b1 = await order('1', 'X', '100', '10.50');
    ids.b2 = await order('1', 'X', '50', '10.5');
    ids.b3 = await order('1', 'X', '0.1', '10');
    ids.b4 = await order('1', 'X', '0.2', '10.000');
    ids.b5 = await order('1', 'X', '5', '9.25');
    ids.s1 = await order('2', 'X', '-30', '11');
    ids.s2 = await order('2', 'X', '-20', '11.75');
    ids.s3 = await order('2', 'X', '-10', '12');
    // Fills 100 of b1 and 20 of b2, at their limit 10.5.
    ids.s4 = await order('2', 'X', '-120', '10.5');
    // Fills 30 of s1 at 11 and 5 of s2 at 11.75.
    ids.b6 = await order('1', 'X', '35', '11.75');
    await sendRequest(server.port, `<transactions id="1"><cancel id="${ids.b5}"/></transactions>`);
  });

  after(async () => {
    await api?.close();
    await server?.close();
  });

  it('GET /api/book/X: levels aggregated by price, best first, open shares only, canonical exact decimals', async () => {
    const answer = await getJson(`${api.base}/api/book/X`);
    expect(answer.status).to.equal(200);
    expect(answer.headers.get('content-type')).to.equal('application/json; charset=utf-8');
    expect(answer.body).to.deep.equal({
      sym: 'X',
      bids: [
        { price: '10.5', shares: '30', orders: 1 },
        { price: '10', shares: '0.3', orders: 2 },
      ],
      asks: [
        { price: '11.75', shares: '15', orders: 1 },
        { price: '12', shares: '10', orders: 1 },
      ],
    });
    expect((await getJson(`${api.base}/api/book/X?depth=1`)).body).to.deep.equal({
      sym: 'X',
      bids: [{ price: '10.5', shares: '30', orders: 1 }],
      asks: [{ price: '11.75', shares: '15', orders: 1 }],
    });
    expect((await getJson(`${api.base}/api/book/Y`)).body).to.deep.equal({ sym: 'Y', bids: [], asks: [] });
  });

  it('GET /api/trades/X: the executions newest first, at the resting limit', async () => {
    const answer = await getJson(`${api.base}/api/trades/X`);
    expect(answer.status).to.equal(200);
    const trades = answer.body as Array<{ price: string; shares: string; time: number }>;
    expect(trades.map(({ price, shares }) => ({ price, shares }))).to.deep.equal([
      { price: '11.75', shares: '5' },
      { price: '11', shares: '30' },
      { price: '10.5', shares: '20' },
      { price: '10.5', shares: '100' },
    ]);
    for (const trade of trades) {
      expect(Object.keys(trade)).to.deep.equal(['price', 'shares', 'time']);
      expect(trade.time)
        .to.be.a('number')
        .within(started - 1, Math.floor(Date.now() / 1000));
    }
    expect(((await getJson(`${api.base}/api/trades/X?limit=2`)).body as unknown[]).length).to.equal(2);
    expect((await getJson(`${api.base}/api/trades/Y`)).body).to.deep.equal([]);
  });

  it('GET /api/symbols: best bid and ask, last price and volume of every symbol, and each write shows at once', async () => {
    expect((await getJson(`${api.base}/api/symbols`)).body).to.deep.equal([
      { sym: 'X', bid: '10.5', ask: '11.75', last: '11.75', volume: '155' },
      { sym: 'Y', bid: null, ask: null, last: null, volume: '0' },
    ]);
    // A new trade is in the very next answer: the volume is summed exactly, never a stale copy.
    await order('1', 'Y', '0.5', '3');
    await order('2', 'Y', '-0.25', '2.5');
    expect((await getJson(`${api.base}/api/symbols`)).body).to.deep.equal([
      { sym: 'X', bid: '10.5', ask: '11.75', last: '11.75', volume: '155' },
      { sym: 'Y', bid: '3', ask: null, last: '3', volume: '0.25' },
    ]);
    await order('2', 'Y', '-0.05', '1');
    expect((await getJson(`${api.base}/api/symbols`)).body).to.deep.include({
      sym: 'Y',
      bid: '3',
      ask: null,
      last: '3',
      volume: '0.3',
    });
  });

  it('unknown symbols are 404 with a JSON error; malformed parameters are 400', async () => {
    for (const path of ['/api/book/NOPE', '/api/trades/NOPE']) {
      const answer = await getJson(`${api.base}${path}`);
      expect(answer.status, path).to.equal(404);
      expect(answer.body, path).to.deep.equal({ error: 'unknown symbol NOPE' });
    }
    for (const path of [
      '/api/book/X?depth=0',
      '/api/book/X?depth=1001',
      '/api/book/X?depth=abc',
      '/api/trades/X?limit=-1',
      '/api/book/a-b',
      '/api/book/%E0',
    ]) {
      const answer = await getJson(`${api.base}${path}`);
      expect(answer.status, path).to.equal(400);
      expect((answer.body as { error: string }).error, path).to.be.a('string');
    }
    expect((await getJson(`${api.base}/api/nothing`)).status).to.equal(404);
    const post = await fetch(`${api.base}/api/symbols`, { method: 'POST' });
    expect(post.status).to.equal(405);
    expect(await post.json()).to.deep.equal({ error: 'read-only: only GET is served' });
  });

  it('GET /api/accounts/ID answers only with the operator token: none and a wrong one get the same 401', async () => {
    const none = await getJson(`${api.base}/api/accounts/1`);
    const wrong = await getJson(`${api.base}/api/accounts/1`, { authorization: `Bearer ${TOKEN.slice(0, -1)}x` });
    const notBearer = await getJson(`${api.base}/api/accounts/1`, { authorization: `Basic ${TOKEN}` });
    for (const answer of [none, wrong, notBearer]) {
      expect(answer.status).to.equal(401);
      expect(answer.headers.get('www-authenticate')).to.equal('Bearer realm="exchange-operator"');
      expect(answer.body).to.deep.equal({
        error: 'this endpoint needs the operator token: Authorization: Bearer <ADMIN_TOKEN>',
      });
    }
    // An unknown account is told apart only with the token.
    expect((await getJson(`${api.base}/api/accounts/999`)).status).to.equal(401);
    expect((await getJson(`${api.base}/api/accounts/999`, { authorization: `Bearer ${TOKEN}` })).body).to.deep.equal({
      error: 'unknown account 999',
    });
  });

  it('GET /api/accounts/ID with the token: balance, reserved cash, positions with reserved shares, open orders', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const buyer = await getJson(`${api.base}/api/accounts/1`, auth);
    expect(buyer.status).to.equal(200);
    // 100000 - 120 x 10.5 - 30 x 11 - 5 x 11.75 (fills) - 318 (open buys) - 0.25 x 3 - 0.05 x 3 (fills of Y) - 0.2 x 3 (open buy of Y).
    expect(buyer.body).to.deep.equal({
      id: '1',
      balance: '98031.75',
      reservedCash: '318.6',
      positions: [
        { sym: 'X', shares: '155', reserved: '0' },
        { sym: 'Y', shares: '0.3', reserved: '0' },
      ],
      openOrders: [
        { id: ids.b2, sym: 'X', amount: '50', limit: '10.5', open: '30' },
        { id: ids.b3, sym: 'X', amount: '0.1', limit: '10', open: '0.1' },
        { id: ids.b4, sym: 'X', amount: '0.2', limit: '10', open: '0.2' },
        { id: String(Number(ids.b6) + 1), sym: 'Y', amount: '0.5', limit: '3', open: '0.2' },
      ],
      openOrderCount: 4,
    });
    const seller = await getJson(`${api.base}/api/accounts/2?orders=1`, auth);
    expect(seller.body).to.deep.equal({
      id: '2',
      balance: '1649.65',
      reservedCash: '0',
      positions: [
        { sym: 'X', shares: '820', reserved: '25' },
        { sym: 'Y', shares: '499.7', reserved: '0' },
      ],
      openOrders: [{ id: ids.s2, sym: 'X', amount: '-20', limit: '11.75', open: '15' }],
      openOrderCount: 2,
    });
    expect((await getJson(`${api.base}/api/accounts/x1`, auth)).status).to.equal(400);
  });

  it('without ADMIN_TOKEN the account API is off: 404 with a JSON error, whatever is sent', async () => {
    const off = await startTestOperationsPort(server.database.url, null);
    try {
      for (const headers of [{}, { authorization: `Bearer ${TOKEN}` }, { authorization: 'Bearer ' }] as Array<
        Record<string, string>
      >) {
        const answer = await getJson(`${off.base}/api/accounts/1`, headers);
        expect(answer.status).to.equal(404);
        expect(answer.body).to.deep.equal({
          error: 'the account API is off: the server was started without ADMIN_TOKEN',
        });
      }
      expect((await getJson(`${off.base}/api/book/X`)).status).to.equal(200);
    } finally {
      await off.close();
    }
  });

  it('answers while a writer holds the write lock: it never takes it, nor waits for it', async () => {
    const writer = await server.pool.connect();
    try {
      await writer.query('BEGIN; LOCK TABLE exchange_write_lock IN EXCLUSIVE MODE');
      const auth = { authorization: `Bearer ${TOKEN}` };
      for (const path of ['/api/book/X', '/api/trades/X', '/api/symbols', '/api/accounts/1', '/api/stats']) {
        expect((await getJson(`${api.base}${path}`, auth)).status, path).to.equal(200);
      }
    } finally {
      await writer.query('ROLLBACK');
      writer.release();
    }
  });

  it('GET / serves the dashboard, locked to its own script and style; /api/stats the last minutes', async () => {
    const page = await fetch(`${api.base}/`);
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.equal('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).to.contain("default-src 'none'");
    expect(await page.text()).to.contain('<script src="/dashboard.js"></script>');
    expect((await fetch(`${api.base}/dashboard.js`)).headers.get('content-type')).to.equal(
      'text/javascript; charset=utf-8',
    );
    const stats = await getJson(`${api.base}/api/stats`);
    expect(stats.status).to.equal(200);
    expect(stats.body).to.have.keys('intervalSeconds', 'points');
    // /metrics and /healthz are still there.
    expect((await fetch(`${api.base}/metrics`)).status).to.equal(200);
  });
});

describe('operator API answers match plain SQL over the same data', function () {
  this.timeout(120_000);
  let server: TestServer;
  let api: TestOperationsPort;

  before(async () => {
    server = await startTestServer();
    api = await startTestOperationsPort(server.database.url, TOKEN);
  });

  after(async () => {
    await api?.close();
    await server?.close();
  });

  it('after 400 random orders and cancels on 3 symbols from 6 accounts: book, trades, symbols and accounts', async () => {
    const accounts = ['11', '12', '13', '14', '15', '16'];
    const syms = ['A', 'B', 'C'];
    await sendRequest(
      server.port,
      `<create>${accounts.map((id) => `<account id="${id}" balance="1000000"/>`).join('')}${syms
        .map(
          (sym) =>
            `<symbol sym="${sym}">${accounts.map((id) => `<account id="${id}">100000</account>`).join('')}</symbol>`,
        )
        .join('')}</create>`,
    );
    const random = seededRandom(42);
    const opened: Array<{ account: string; id: string }> = [];
    // The volume is read now and then during the run, so it is summed up in steps.
    for (let step = 0; step < 400; step++) {
      const account = accounts[Math.floor(random() * accounts.length)] as string;
      if (random() < 0.1 && opened.length > 0) {
        const victim = opened[Math.floor(random() * opened.length)] as { account: string; id: string };
        await sendRequest(
          server.port,
          `<transactions id="${victim.account}"><cancel id="${victim.id}"/></transactions>`,
        );
      } else {
        const sym = syms[Math.floor(random() * syms.length)] as string;
        const buy = random() < 0.5;
        const amount = `${buy ? '' : '-'}${1 + Math.floor(random() * 50)}.${Math.floor(random() * 10)}`;
        const limit = (95 + random() * 10).toFixed(random() < 0.5 ? 1 : 2);
        const reply = await sendRequest(
          server.port,
          `<transactions id="${account}"><order sym="${sym}" amount="${amount}" limit="${limit}"/></transactions>`,
        );
        const id = /id="(\d+)"/.exec(reply)?.[1];
        if (id) opened.push({ account, id });
      }
      if (step % 97 === 0) await getJson(`${api.base}/api/symbols`);
    }

    const sql = async <T>(text: string, values: unknown[] = []) => (await server.pool.query(text, values)).rows as T[];
    for (const sym of syms) {
      const book = (await getJson(`${api.base}/api/book/${sym}?depth=1000`)).body as {
        bids: unknown[];
        asks: unknown[];
      };
      for (const [side, sign, order] of [
        ['bids', '>', 'DESC'],
        ['asks', '<', 'ASC'],
      ] as const) {
        const expected = await sql(
          `SELECT trim_scale(limit_price)::text AS price, trim_scale(sum(open_shares))::text AS shares, count(*)::int AS orders
          FROM orders WHERE sym = $1 AND amount ${sign} 0 AND open_shares > 0 GROUP BY limit_price ORDER BY limit_price ${order}`,
          [sym],
        );
        expect(book[side], `${sym} ${side}`).to.deep.equal(expected);
      }
      const trades = (await getJson(`${api.base}/api/trades/${sym}?limit=1000`)).body;
      const expected = await sql(
        `SELECT trim_scale(e.price)::text AS price, trim_scale(e.shares)::text AS shares, e.executed_at::int AS time
        FROM executions e JOIN orders b ON b.id = e.buy_order_id WHERE b.sym = $1 ORDER BY e.id DESC`,
        [sym],
      );
      expect(expected.length, sym).to.be.greaterThan(10);
      expect(trades, `${sym} trades`).to.deep.equal(expected);
    }
    const symbols = (await getJson(`${api.base}/api/symbols`)).body;
    expect(symbols).to.deep.equal(
      await sql(`SELECT s.sym,
        (SELECT trim_scale(max(limit_price))::text FROM orders WHERE sym = s.sym AND amount > 0 AND open_shares > 0) AS bid,
        (SELECT trim_scale(min(limit_price))::text FROM orders WHERE sym = s.sym AND amount < 0 AND open_shares > 0) AS ask,
        (SELECT trim_scale(e.price)::text FROM executions e JOIN orders b ON b.id = e.buy_order_id WHERE b.sym = s.sym ORDER BY e.id DESC LIMIT 1) AS last,
        (SELECT trim_scale(coalesce(sum(e.shares), 0))::text FROM executions e JOIN orders b ON b.id = e.buy_order_id WHERE b.sym = s.sym) AS volume
      FROM symbols s ORDER BY s.sym`),
    );
    for (const account of accounts) {
      const view = (
        await getJson(`${api.base}/api/accounts/${account}?orders=1000`, { authorization: `Bearer ${TOKEN}` })
      ).body as Record<string, unknown>;
      const [row] = await sql<{ balance: string; cash: string; count: number }>(
        `SELECT trim_scale(a.balance)::text AS balance,
          trim_scale(coalesce((SELECT sum(open_shares * limit_price) FROM orders WHERE account_id = a.id AND amount > 0), 0))::text AS cash,
          (SELECT count(*)::int FROM orders WHERE account_id = a.id AND open_shares > 0) AS count FROM accounts a WHERE a.id = $1`,
        [account],
      );
      expect(view.balance, account).to.equal(row?.balance);
      expect(view.reservedCash, account).to.equal(row?.cash);
      expect(view.openOrderCount, account).to.equal(row?.count);
      expect(view.openOrders, account).to.deep.equal(
        await sql(
          `SELECT id::text, sym, trim_scale(amount)::text AS amount,
          trim_scale(limit_price)::text AS limit, trim_scale(open_shares)::text AS open FROM orders o WHERE account_id = $1 AND open_shares > 0 ORDER BY o.id`,
          [account],
        ),
      );
      expect(view.positions, account).to.deep.equal(
        await sql(
          `SELECT p.sym, trim_scale(p.shares)::text AS shares,
          trim_scale(coalesce((SELECT sum(open_shares) FROM orders o WHERE o.account_id = p.account_id AND o.sym = p.sym AND amount < 0), 0))::text AS reserved
          FROM positions p WHERE p.account_id = $1 ORDER BY p.sym`,
          [account],
        ),
      );
    }
  });
});
