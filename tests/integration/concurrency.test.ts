/**
 * Concurrency: many clients (and several servers on one database) racing
 * crossing orders and cancels, then the SPEC invariants checked in SQL.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { LengthClient, sendOnce, sendRequest } from '../support/client.js';
import { findInvariantViolations } from '../../client/invariants.js';
import { GrantLedger } from '../support/ledger.js';
import { startServerProcess } from '../support/process.js';
import { pick, seededRandom } from '../../client/random.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults, type ReplyNode } from '../support/xml.js';
import { codeOfMessage, type ErrorCode } from '../../server/errors.js';
import { createPool } from '../../server/store/pool.js';

type Workload = { accounts: string[]; symbols: string[] };

/** Every grant this file makes, for exact invariant checks over the shared database. */
const ledger = new GrantLedger();

/** Sends a <create> and records in the ledger what it granted (only what the reply says was created). */
async function grant(
  port: number,
  accounts: Array<[id: string, balance: string]>,
  shares: Array<[sym: string, id: string, amount: string]>,
): Promise<void> {
  const xml = `<create>${accounts.map(([id, balance]) => `<account id="${id}" balance="${balance}"/>`).join('')}${shares
    .map(([sym, id, amount]) => `<symbol sym="${sym}"><account id="${id}">${amount}</account></symbol>`)
    .join('')}</create>`;
  const results = parseResults(await sendOnce(port, xml));
  const grants = [
    ...accounts.map(
      ([, balance]) =>
        () =>
          ledger.addCash(balance),
    ),
    ...shares.map(
      ([sym, , amount]) =>
        () =>
          ledger.addShares(sym, amount),
    ),
  ];
  results.forEach((node, index) => {
    if (node.name === 'created') grants[index]?.();
  });
  expect(results.map((node) => node.name)).to.deep.equal(grants.map(() => 'created'));
}

/** Creates accounts holding cash and shares of every symbol. */
async function seedAccounts(port: number, prefix: string, accountCount: number, symbols: string[]): Promise<Workload> {
  const accounts = Array.from({ length: accountCount }, (_, index) => `${prefix}${index}`);
  await grant(
    port,
    accounts.map((id) => [id, '1000000.5']),
    symbols.flatMap((sym) => accounts.map((id) => [sym, id, '1000.25'] as [string, string, string])),
  );
  return { accounts, symbols };
}

type Send = (xml: string) => Promise<string>;
type RaceStats = { opened: number; canceled: number; rejected: number; failed: number };

/** One client's random walk: crossing orders around a mid price, queries and cancels of its own orders. */
async function runClient(
  send: Send,
  workload: Workload,
  seed: number,
  requests: number,
  stats: RaceStats,
): Promise<void> {
  const random = seededRandom(seed);
  const myOrders: Array<{ account: string; id: string }> = [];
  for (let index = 0; index < requests; index++) {
    const account = pick(random, workload.accounts);
    const roll = random();
    let xml: string;
    if (roll < 0.2 && myOrders.length > 0) {
      const order = pick(random, myOrders);
      xml = `<transactions id="${order.account}"><cancel id="${order.id}"/><query id="${order.id}"/></transactions>`;
    } else {
      const sym = pick(random, workload.symbols);
      const side = random() < 0.5 ? '' : '-';
      const amount = `${side}${1 + Math.floor(random() * 20)}.${Math.floor(random() * 10)}`;
      const limit = (95 + Math.floor(random() * 1000) / 100).toFixed(2);
      xml = `<transactions id="${account}"><order sym="${sym}" amount="${amount}" limit="${limit}"/></transactions>`;
    }
    const results = parseResults(await send(xml));
    for (const node of results) countResult(node, stats, account, myOrders);
  }
}

/** Rejections a race may legitimately end in; any other error is a failure. */
const BUSINESS_REJECTIONS = new Set<ErrorCode | undefined>([
  'insufficient_funds',
  'insufficient_shares',
  'nothing_open',
]);

function countResult(
  node: ReplyNode,
  stats: RaceStats,
  account: string,
  myOrders: Array<{ account: string; id: string }>,
): void {
  if (node.name === 'opened') {
    stats.opened++;
    myOrders.push({ account, id: node.attributes.id as string });
  } else if (node.name === 'canceled') {
    stats.canceled++;
  } else if (node.name === 'error') {
    if (BUSINESS_REJECTIONS.has(codeOfMessage(node.text))) stats.rejected++;
    else stats.failed++;
  }
}

/** Checks the invariants over the whole database against everything this file granted. */
async function expectInvariants(pool: pg.Pool): Promise<void> {
  expect(await findInvariantViolations(pool, await ledger.totals(pool))).to.deep.equal([]);
}

describe('concurrency: racing clients keep every invariant', function () {
  this.timeout(180_000);
  let server: TestServer;

  before(async () => {
    server = await startTestServer({ framing: 'length', poolSize: 8 });
  });
  after(async () => server.close());

  it('sessions default to SERIALIZABLE', async () => {
    const client = await server.pool.connect();
    try {
      const result = await client.query<{ transaction_isolation: string }>('SHOW transaction_isolation');
      expect(result.rows[0]?.transaction_isolation).to.equal('serializable');
    } finally {
      client.release();
    }
  });

  it('sessions never JIT-compile: a statement costed high by the planner settings would compile for tens of ms', async () => {
    const result = await server.pool.query<{ jit: string }>('SHOW jit');
    expect(result.rows[0]?.jit).to.equal('off');
  });

  it('status reads alone run at READ COMMITTED (one snapshot, no predicate locks)', async () => {
    const readPool = createPool({ databaseUrl: server.database.url, maxConnections: 1, isolation: 'read committed' });
    try {
      const result = await readPool.query<{ transaction_isolation: string }>('SHOW transaction_isolation');
      expect(result.rows[0]?.transaction_isolation).to.equal('read committed');
    } finally {
      await readPool.end();
    }
  });

  it('16 clients racing crossing orders and cancels on one symbol', async () => {
    const workload = await seedAccounts(server.port, '100', 6, ['HOT']);
    const stats: RaceStats = { opened: 0, canceled: 0, rejected: 0, failed: 0 };
    const clients = await Promise.all(Array.from({ length: 16 }, () => LengthClient.connect(server.port)));
    await Promise.all(
      clients.map((client, index) => runClient((xml) => client.send(xml), workload, 100 + index, 40, stats)),
    );
    clients.forEach((client) => client.close());
    console.log('      retries', JSON.stringify(server.store.retryCounters), JSON.stringify(stats));
    expect(stats.failed, 'requests failed after retries').to.equal(0);
    expect(stats.opened).to.be.greaterThan(200);
    const fills = await server.pool.query<{ count: string }>(
      "SELECT count(*)::text AS count FROM executions e JOIN orders o ON o.id = e.buy_order_id WHERE o.sym = 'HOT'",
    );
    expect(Number(fills.rows[0]?.count), 'the workload must actually cross').to.be.greaterThan(20);
    await expectInvariants(server.pool);
  });

  it('16 clients racing across four symbols, half of them over one-shot bare connections', async () => {
    const bare = await startTestServer({ framing: 'bare', database: server.database, poolSize: 4 });
    try {
      const symbols = ['A1', 'B2', 'C3', 'D4'];
      const workload = await seedAccounts(server.port, '200', 8, symbols);
      const stats: RaceStats = { opened: 0, canceled: 0, rejected: 0, failed: 0 };
      const clients = await Promise.all(Array.from({ length: 8 }, () => LengthClient.connect(server.port)));
      await Promise.all([
        ...clients.map((client, index) => runClient((xml) => client.send(xml), workload, 200 + index, 30, stats)),
        ...Array.from({ length: 8 }, (_, index) =>
          runClient((xml) => sendRequest(bare.port, xml), workload, 300 + index, 30, stats),
        ),
      ]);
      clients.forEach((client) => client.close());
      expect(stats.failed).to.equal(0);
      expect(stats.canceled).to.be.greaterThan(0);
      await expectInvariants(server.pool);
    } finally {
      await bare.close();
    }
  });

  it('no double spend: 20 parallel buys when only 7 are affordable open exactly 7', async () => {
    await grant(server.port, [['401', '700']], [['DS', '401', '1']]);
    const replies = await Promise.all(
      Array.from({ length: 20 }, () =>
        sendOnce(server.port, '<transactions id="401"><order sym="DS" amount="1" limit="100"/></transactions>'),
      ),
    );
    const results = replies.flatMap(parseResults);
    expect(results.filter((node) => node.name === 'opened')).to.have.length(7);
    expect(
      results.filter((node) => node.name === 'error' && codeOfMessage(node.text) === 'insufficient_funds'),
    ).to.have.length(13);
    const balance = await server.pool.query<{ balance: string }>("SELECT balance::text FROM accounts WHERE id = '401'");
    expect(Number(balance.rows[0]?.balance)).to.equal(0);
  });

  it('no double sell: 10 parallel sells of 3 shares from a position of 10 open exactly 3', async () => {
    await grant(server.port, [['402', '0']], [['DSS', '402', '10']]);
    const replies = await Promise.all(
      Array.from({ length: 10 }, () =>
        sendOnce(server.port, '<transactions id="402"><order sym="DSS" amount="-3" limit="5"/></transactions>'),
      ),
    );
    const results = replies.flatMap(parseResults);
    expect(results.filter((node) => node.name === 'opened')).to.have.length(3);
    const position = await server.pool.query<{ shares: string }>(
      "SELECT shares::text FROM positions WHERE account_id = '402' AND sym = 'DSS'",
    );
    expect(position.rows[0]?.shares).to.equal('1');
  });

  it('one order canceled from 10 connections at once is canceled and refunded exactly once', async () => {
    await grant(server.port, [['403', '1000']], [['CX', '403', '1']]);
    const opened = parseResults(
      await sendOnce(server.port, '<transactions id="403"><order sym="CX" amount="4" limit="25"/></transactions>'),
    );
    const orderId = opened[0]?.attributes.id as string;
    const replies = await Promise.all(
      Array.from({ length: 10 }, () =>
        sendOnce(server.port, `<transactions id="403"><cancel id="${orderId}"/></transactions>`),
      ),
    );
    const results = replies.flatMap(parseResults);
    expect(results.filter((node) => node.name === 'canceled')).to.have.length(1);
    expect(results.filter((node) => node.name === 'error')).to.have.length(9);
    const balance = await server.pool.query<{ balance: string }>("SELECT balance::text FROM accounts WHERE id = '403'");
    expect(balance.rows[0]?.balance).to.equal('1000');
  });

  it('a cancel racing the fill of the same order: each share is filled or canceled, never both', async () => {
    await grant(
      server.port,
      [
        ['404', '100000'],
        ['405', '0'],
      ],
      [['RC', '405', '1000']],
    );
    for (let round = 0; round < 10; round++) {
      const opened = parseResults(
        await sendOnce(server.port, '<transactions id="404"><order sym="RC" amount="10" limit="50"/></transactions>'),
      );
      const orderId = opened[0]?.attributes.id as string;
      await Promise.all([
        sendOnce(server.port, `<transactions id="404"><cancel id="${orderId}"/></transactions>`),
        sendOnce(server.port, '<transactions id="405"><order sym="RC" amount="-6" limit="50"/></transactions>'),
      ]);
    }
    await expectInvariants(server.pool);
  });

  it('first buys of one new symbol from many clients and two processes all open, and create it once', async () => {
    const env = { DATABASE_URL: server.database.url, REPLY_FRAMING: 'length' };
    const processes = await Promise.all([startServerProcess(env), startServerProcess(env)]);
    try {
      const ports = [server.port, processes[0]!.port, processes[1]!.port];
      const buyers = Array.from({ length: 12 }, (_, index) => [`50${index}`, '1000'] as [string, string]);
      await grant(server.port, [...buyers, ['520', '0']], []);
      const sym = 'FRESH';
      // 36 buys of a symbol nobody created, over three servers, racing a <create><symbol> of it.
      const buys = buyers.flatMap(([id], index) =>
        Array.from({ length: 3 }, (_, k) =>
          sendOnce(
            ports[(index + k) % 3]!,
            `<transactions id="${id}"><order sym="${sym}" amount="1" limit="${10 + k}"/></transactions>`,
          ),
        ),
      );
      const create = sendOnce(
        processes[1]!.port,
        `<create><symbol sym="${sym}"><account id="520">5</account></symbol></create>`,
      );
      const results = (await Promise.all(buys)).flatMap(parseResults);
      const created = parseResults(await create);
      expect(results.map((node) => node.name)).to.deep.equal(results.map(() => 'opened'));
      expect(created.map((node) => node.name)).to.deep.equal(['created']);
      ledger.addShares(sym, '5');
      const symbols = await server.pool.query<{ count: string }>(
        'SELECT count(*)::text AS count FROM symbols WHERE sym = $1',
        [sym],
      );
      expect(symbols.rows[0]?.count).to.equal('1');
      // Then it trades normally: the shares created cross the best buys (limit 12 first).
      const sell = parseResults(
        await sendOnce(
          server.port,
          `<transactions id="520"><order sym="${sym}" amount="-5" limit="1"/></transactions>`,
        ),
      );
      expect(sell.map((node) => node.name)).to.deep.equal(['opened']);
      const fills = await server.pool.query<{ price: string }>(
        'SELECT e.price::text AS price FROM executions e JOIN orders o ON o.id = e.sell_order_id WHERE o.sym = $1 ORDER BY e.id',
        [sym],
      );
      expect(fills.rows.map((row) => row.price)).to.deep.equal(['12', '12', '12', '12', '12']);
      await expectInvariants(server.pool);
    } finally {
      await Promise.all(processes.map((child) => child.stop()));
    }
  });

  it('two server processes on one database racing on one symbol keep every invariant', async () => {
    const env = { DATABASE_URL: server.database.url, REPLY_FRAMING: 'length' };
    const processes = await Promise.all([startServerProcess(env), startServerProcess(env)]);
    try {
      const workload = await seedAccounts(processes[0]!.port, '300', 6, ['PX']);
      const stats: RaceStats = { opened: 0, canceled: 0, rejected: 0, failed: 0 };
      const clients = await Promise.all(
        Array.from({ length: 12 }, (_, index) => LengthClient.connect(processes[index % 2]!.port)),
      );
      await Promise.all(
        clients.map((client, index) => runClient((xml) => client.send(xml), workload, 400 + index, 30, stats)),
      );
      clients.forEach((client) => client.close());
      expect(stats.failed).to.equal(0);
      await expectInvariants(server.pool);
    } finally {
      await Promise.all(processes.map((child) => child.stop()));
    }
  });
});
