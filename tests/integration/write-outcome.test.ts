/**
 * A write batch whose connection to PostgreSQL is lost during its COMMIT: every client
 * of the batch gets its real outcome (the id of its order, its rejection, its cancel
 * with shares and fills), never "outcome unknown", whether the batch had committed or
 * not, and when PostgreSQL cannot be reached for a while after; each write is applied
 * exactly once. The cut is made by a TCP proxy between the server and PostgreSQL, at
 * the moment the batch's message (BEGIN ... EXECUTE ... COMMIT) goes through: once
 * PostgreSQL has run it (committed), while it is in flight, and before it is sent.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { findInvariantViolations } from '../../client/invariants.js';
import { applySchema } from '../../server/store/migrate.js';
import { createPool } from '../../server/store/pool.js';
import {
  OUTCOME_RETENTION_MS,
  OutcomePruner,
  lookUpBatch,
  newBatchToken,
  uuidV7,
} from '../../server/store/write-outcome.js';
import { sendRequest } from '../support/client.js';
import { sleep, waitFor } from '../support/waiting.js';
import { writeLockWaiters } from '../support/write-lock.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { GrantLedger } from '../support/ledger.js';
import { PgProxy, type CutMode } from '../support/pg-proxy.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults, type ReplyNode } from '../support/xml.js';

/** How many writes a batch message carries (its array of kinds). */
function writesIn(chunk: Buffer): number {
  const text = chunk.toString('latin1');
  if (!text.includes('EXECUTE apply_batch')) return 0;
  return (text.match(/"order"|"cancel"/g) ?? []).length;
}

type Setup = { database: TestDatabase; proxy: PgProxy; server: TestServer; admin: pg.Pool; grants: GrantLedger };

async function setUp(outcomeLookupMs: number): Promise<Setup> {
  const database = await createTestDatabase();
  const target = new URL(database.url);
  const proxy = await PgProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  const server = await startTestServer({
    database,
    poolUrl: proxy.urlFor(database.url),
    writeLimits: { outcomeLookupMs },
  });
  const admin = createPool({ databaseUrl: database.url, maxConnections: 3 });
  admin.on('error', () => undefined);
  return { database, proxy, server, admin, grants: new GrantLedger() };
}

async function tearDown(setup: Setup | undefined): Promise<void> {
  if (!setup) return;
  await setup.server.close();
  await setup.proxy.close();
  await setup.admin.end();
  await setup.database.drop();
}

/** Sets up a server behind a cutting proxy for the enclosing describe; the getter returns it. */
function useCutProxy(outcomeLookupMs: number): () => Setup {
  let setup: Setup | undefined;
  before(async () => {
    setup = await setUp(outcomeLookupMs);
  });
  after(async () => {
    await tearDown(setup);
  });
  return () => {
    if (!setup) throw new Error('the set-up did not run');
    return setup;
  };
}

async function send(port: number, xml: string): Promise<ReplyNode[]> {
  return parseResults(await sendRequest(port, xml));
}

/**
 * A round of writes that share one batch, none depending on another's place in it:
 * six buys that rest (each account on a symbol of its own), a buy that cannot be paid, a
 * sell that rests, and cancels of two resting sells (one partly filled before).
 */
async function round(setup: Setup, tag: string, mode: CutMode, downMs: number): Promise<void> {
  const { server, admin, grants } = setup;
  const port = server.port;
  const account = (index: number) => `${tag}${String(index).padStart(2, '0')}`;
  const sym = `C${tag}`;
  const accounts = Array.from({ length: 12 }, (_, index) => account(index + 1));
  const created = await send(
    port,
    `<create>${accounts.map((id) => `<account id="${id}" balance="1000"/>`).join('')}` +
      `<symbol sym="${sym}">${accounts.map((id) => `<account id="${id}">100</account>`).join('')}</symbol></create>`,
  );
  expect(
    created.every((node) => node.name === 'created'),
    JSON.stringify(created),
  ).to.equal(true);
  for (const _ of accounts) {
    grants.addCash('1000');
    grants.addShares(sym, '100');
  }
  // Two resting sells to cancel in the batch; the first is partly filled (1 of 5 at 20).
  const [sell1] = await send(
    port,
    `<transactions id="${account(1)}"><order sym="${sym}" amount="-5" limit="20"/></transactions>`,
  );
  const [sell2] = await send(
    port,
    `<transactions id="${account(2)}"><order sym="${sym}" amount="-3" limit="21"/></transactions>`,
  );
  const [taker] = await send(
    port,
    `<transactions id="${account(3)}"><order sym="${sym}" amount="1" limit="20.5"/></transactions>`,
  );
  const canceledId = sell1?.attributes.id as string;
  const untouchedId = sell2?.attributes.id as string;
  expect([sell1?.name, sell2?.name, taker?.name]).to.deep.equal(['opened', 'opened', 'opened']);
  const tombstonesBefore = Number(
    (await admin.query<{ n: string }>('SELECT count(*) AS n FROM write_batches WHERE order_ids IS NULL')).rows[0]?.n,
  );

  // Hold the write lock so that the writes below queue up and form one batch behind a first one.
  const holder = await admin.connect();
  let cutBatch = 0;
  try {
    await holder.query('BEGIN; LOCK TABLE exchange_write_lock IN EXCLUSIVE MODE');
    const first = send(
      port,
      `<transactions id="${account(12)}"><order sym="${sym}0" amount="1" limit="1"/></transactions>`,
    );
    await waitFor(
      'the first order to wait for the write lock',
      async () => (await writeLockWaiters(admin)) > 0,
      60_000,
    );
    const cut = setup.proxy.cutOnce(
      (chunk) => {
        const writes = writesIn(chunk);
        if (writes >= 2) cutBatch = writes;
        return writes >= 2;
      },
      mode,
      downMs,
    );
    const requests: Array<[string, string]> = [
      ...[4, 5, 6, 7, 8, 9].map((index): [string, string] => [
        account(index),
        `<order sym="${sym}${index}" amount="2" limit="3"/>`,
      ]),
      [account(10), `<order sym="${sym}" amount="1000" limit="1000"/>`],
      [account(11), `<order sym="${sym}" amount="-2" limit="30"/>`],
      [account(1), `<cancel id="${canceledId}"/>`],
      [account(2), `<cancel id="${untouchedId}"/>`],
    ];
    const replies = requests.map(([id, item]) => send(port, `<transactions id="${id}">${item}</transactions>`));
    // Every request has reached the server's write queue well before this.
    while (server.listener.connectionCount < requests.length + 1) await sleep(10);
    await sleep(300);
    await holder.query('COMMIT');
    const firstReply = await first;
    await cut;
    const results = await Promise.all(replies);
    expect(firstReply[0]?.name).to.equal('opened');
    const text = JSON.stringify(results);
    expect(text, `no reply is "outcome unknown" or a refusal: ${text}`).to.not.match(
      /unknown|internal error|not applied/,
    );
    expect(cutBatch, 'the cut batch carried most of the writes').to.be.at.least(5);

    // Orders: the six buys and the sell opened, the unpayable buy was refused.
    const opened = new Map<string, string>();
    results.slice(0, 8).forEach((nodes, index) => {
      const [id, item] = requests[index] as [string, string];
      const node = nodes[0];
      expect(nodes, `${id}: ${item}`).to.have.length(1);
      if (id === account(10)) {
        expect(node?.name).to.equal('error');
        expect(node?.text).to.equal('insufficient funds');
      } else {
        expect(node?.name, `${id}: ${JSON.stringify(node)}`).to.equal('opened');
        opened.set(node?.attributes.id as string, id);
      }
    });
    // Cancels: with the shares canceled and the fills of the canceled order.
    const [canceled] = results[8] as ReplyNode[];
    expect(canceled?.name).to.equal('canceled');
    expect(canceled?.attributes.id).to.equal(canceledId);
    expect(
      canceled?.children.map((child) => [child.name, child.attributes.shares, child.attributes.price ?? null]),
    ).to.deep.equal([
      ['canceled', '4', null],
      ['executed', '1', '20'],
    ]);
    const [other] = results[9] as ReplyNode[];
    expect(other?.children.map((child) => [child.name, child.attributes.shares])).to.deep.equal([['canceled', '3']]);

    // In SQL: each write applied exactly once, the ids as replied.
    const rows = await admin.query<{ id: string; account_id: string }>(
      'SELECT id::text, account_id FROM orders WHERE account_id = ANY ($1) AND id > $2::bigint',
      [accounts, taker?.attributes.id],
    );
    const stored = new Map(rows.rows.map((row) => [row.id, row.account_id]));
    expect(stored.size, 'one order row per opened order (the first order included)').to.equal(opened.size + 1);
    for (const [id, owner] of opened) expect(stored.get(id), `order ${id}`).to.equal(owner);
    const state = await admin.query<{ canceled: string | null; open: string }>(
      'SELECT canceled_shares::text AS canceled, open_shares::text AS open FROM orders WHERE id = ANY ($1::bigint[]) ORDER BY id',
      [[canceledId, untouchedId]],
    );
    expect(state.rows).to.deep.equal([
      { canceled: '4', open: '0' },
      { canceled: '3', open: '0' },
    ]);
    const tombstones = Number(
      (await admin.query<{ n: string }>('SELECT count(*) AS n FROM write_batches WHERE order_ids IS NULL')).rows[0]?.n,
    );
    // Cut after its reply, the batch committed and its record was read; before sending, a
    // tombstone made sure it never would, and the writes ran again; in flight, either.
    if (mode === 'after-reply') expect(tombstones - tombstonesBefore).to.equal(0);
    else if (mode === 'before-sending') expect(tombstones - tombstonesBefore).to.equal(1);
    else expect(tombstones - tombstonesBefore).to.be.within(0, 1);
    expect(await findInvariantViolations(admin, await grants.totals(admin)), 'invariants').to.deep.equal([]);
  } finally {
    await holder.query('ROLLBACK').catch(() => undefined);
    holder.release();
  }
}

describe('a write batch whose connection to PostgreSQL is lost during COMMIT', function () {
  this.timeout(120_000);
  const setup = useCutProxy(20_000);

  const cases: Array<[string, CutMode, number]> = [
    ['cut once the batch committed, before its reply: every client gets its real outcome, read back', 'after-reply', 0],
    ['cut before PostgreSQL received the batch (it never runs): the writes run again, once each', 'before-sending', 0],
    [
      'cut while the batch is in flight (the lookup races it): every client gets its real outcome, each write applied once',
      'in-flight',
      0,
    ],
    [
      'cut once the batch committed, then PostgreSQL unreachable for 1.5 s: the outcome is read back once it answers',
      'after-reply',
      1_500,
    ],
    [
      'cut before sending, then PostgreSQL unreachable for 1.5 s: the writes run again once it answers',
      'before-sending',
      1_500,
    ],
    [
      'cut in flight, then PostgreSQL unreachable for 1.5 s: every client gets its real outcome once it answers',
      'in-flight',
      1_500,
    ],
  ];
  cases.forEach(([title, mode, downMs], index) => {
    it(title, async () => {
      await round(setup(), `7${index}0`, mode, downMs);
      if (downMs > 0) expect(setup().proxy.refused, 'connections were refused meanwhile').to.be.greaterThan(0);
    });
  });
});

describe('a <create> item whose connection to PostgreSQL is lost during COMMIT', function () {
  this.timeout(120_000);
  const setup = useCutProxy(20_000);

  const modes: Array<[CutMode, number]> = [
    ['after-reply', 0],
    ['before-sending', 0],
    ['in-flight', 0],
    ['after-reply', 1_500],
    ['before-sending', 1_500],
  ];
  modes.forEach(([mode, downMs], index) => {
    it(`cut ${mode}${downMs > 0 ? `, then PostgreSQL unreachable for ${downMs} ms` : ''}: the account and the shares are created once, and the client is told so`, async () => {
      const { server, proxy, admin } = setup();
      const account = `81${index}`;
      const sym = `CR${index}`;
      const accountCut = proxy.cutOnce(
        (chunk) => chunk.toString('latin1').includes('INSERT INTO accounts'),
        mode,
        downMs,
      );
      const created = await send(server.port, `<create><account id="${account}" balance="250.5"/></create>`);
      await accountCut;
      expect(created.map((node) => [node.name, node.attributes.id])).to.deep.equal([['created', account]]);
      const sharesCut = proxy.cutOnce((chunk) => chunk.toString('latin1').includes('add_shares('), mode, downMs);
      const credited = await send(
        server.port,
        `<create><symbol sym="${sym}"><account id="${account}">40</account></symbol></create>`,
      );
      await sharesCut;
      expect(credited.map((node) => [node.name, node.attributes.sym, node.attributes.id])).to.deep.equal([
        ['created', sym, account],
      ]);
      // Applied once: a second run of either would show as a doubled position or an "exists".
      const balance = await admin.query<{ balance: string }>('SELECT balance::text FROM accounts WHERE id = $1', [
        account,
      ]);
      expect(balance.rows.map((row) => Number(row.balance))).to.deep.equal([250.5]);
      const position = await admin.query<{ shares: string }>(
        'SELECT shares::text FROM positions WHERE account_id = $1 AND sym = $2',
        [account, sym],
      );
      expect(position.rows.map((row) => Number(row.shares))).to.deep.equal([40]);
      // A second create of the same account is still refused as existing.
      const again = await send(server.port, `<create><account id="${account}" balance="1"/></create>`);
      expect(again[0]?.name).to.equal('error');
      expect(again[0]?.text).to.match(/exists/);
    });
  });
});

describe('a write batch whose outcome cannot be looked up before the deadline', function () {
  this.timeout(60_000);
  const setup = useCutProxy(500);

  it('says the outcome is unknown (never a false success or failure), and the lookup deadline is what bounds it', async () => {
    const { server, proxy, admin } = setup();
    await send(server.port, '<create><account id="9001" balance="100"/></create>');
    const cut = proxy.cutOnce((chunk) => writesIn(chunk) >= 1, 'after-reply', 3_000);
    const reply = await send(
      server.port,
      '<transactions id="9001"><order sym="DX" amount="1" limit="1"/></transactions>',
    );
    await cut;
    expect(reply[0]?.name).to.equal('error');
    expect(reply[0]?.text).to.match(/outcome is unknown; query before retrying/);
    // It had committed: the order is there, once.
    const rows = await admin.query('SELECT 1 FROM orders WHERE account_id = $1', ['9001']);
    expect(rows.rowCount).to.equal(1);
  });
});

describe('batch records', function () {
  this.timeout(60_000);
  let database: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    database = await createTestDatabase();
    pool = createPool({ databaseUrl: database.url, maxConnections: 2 });
    await applySchema(pool);
  });

  after(async () => {
    await pool?.end();
    await database?.drop();
  });

  it('tokens sort by their time, and a lookup of a batch that never ran is a tombstone, every time', async () => {
    const earlier = uuidV7(Date.now() - 1);
    const later = newBatchToken();
    expect(earlier < later).to.equal(true);
    expect(later).to.match(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(await lookUpBatch(pool, later)).to.deep.equal({ committed: false });
    expect(await lookUpBatch(pool, later)).to.deep.equal({ committed: false });
    const rows = await pool.query('SELECT order_ids FROM write_batches WHERE token = $1', [later]);
    expect(rows.rows).to.deep.equal([{ order_ids: null }]);
  });

  it('are deleted once both the token and the database say they are older than the retention', async () => {
    const old = Date.now() - OUTCOME_RETENTION_MS - 60_000;
    const rows: Array<[string, string]> = [
      [uuidV7(old), `now() - interval '${OUTCOME_RETENTION_MS + 60_000} milliseconds'`],
      [uuidV7(old), 'now()'], // made by a server whose clock is behind: kept
      [newBatchToken(), `now() - interval '${OUTCOME_RETENTION_MS + 60_000} milliseconds'`],
      [newBatchToken(), 'now()'],
    ];
    await pool.query('DELETE FROM write_batches');
    for (const [token, createdAt] of rows) {
      await pool.query(
        `INSERT INTO write_batches (token, created_at, order_ids, outcomes) VALUES ($1, ${createdAt}, '{1}', '{NULL}')`,
        [token],
      );
    }
    expect(await new OutcomePruner(pool).prune()).to.equal(1);
    const left = await pool.query<{ token: string }>('SELECT token FROM write_batches ORDER BY token');
    expect(left.rows.map((row) => row.token).sort()).to.deep.equal(
      rows
        .slice(1)
        .map(([token]) => token)
        .sort(),
    );
  });
});
