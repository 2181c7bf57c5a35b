/**
 * apply_writes and order_statuses keep one generic plan per statement until a
 * VACUUM or ANALYZE replans it, and a server's sessions make those plans at its first
 * requests, often on a fresh exchange with nearly empty tables. Found under
 * load: the status read, planned that way, scanned all of orders and
 * executions at every call, so PostgreSQL's CPU per request grew through a run.
 * This runs every path of the matcher and the status read on tiny tables (the
 * orders, fills, credits, a rejection, cancels; not a cancel's flush of
 * executions mid-batch, which reads no table), grows the tables a hundredfold,
 * and counts what the same session then reads: key lookups only, never a
 * whole table. Counted in pg_stat_xact_user_tables, not timed.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { applySchema } from '../../server/store/migrate.js';
import { createPool } from '../../server/store/pool.js';
import { writeArrays, type Write } from '../support/apply-writes.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const APPLY = `SELECT w.order_id::text, w.rejection, w.fill_count, w.outcome
  FROM apply_writes($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::bigint[]) WITH ORDINALITY AS w(
    order_id, rejection, fill_count, outcome, shares_canceled, time_canceled, fills, n) ORDER BY w.n`;
const STATUSES = 'SELECT n, open_shares::text, shares::text FROM order_statuses($1::text[], $2::bigint[])';
const TABLES = ['accounts', 'positions', 'orders', 'executions'];
const GROWN_ROWS = 20_000;

/** Every path of the matcher: resting orders, fills both ways, credits, a rejection, a cancel with fills. */
async function exerciseEveryPath(client: pg.PoolClient): Promise<void> {
  const opened = async (writes: Write[]) =>
    (await client.query<{ order_id: string | null }>(APPLY, writeArrays(writes))).rows.map((row) => row.order_id);
  const [restingSell, , restingBuy] = await opened([
    ['order', 'A', 'X', '-5', '10'], // rests
    ['order', 'B', 'X', '3', '10'], // fills 3 of it: B pays, A is owed
    ['order', 'B', 'X', '4', '9'], // rests
    ['order', 'A', 'X', '-2', '9'], // fills 2 of the buy
    ['order', 'B', 'X', '1', '999999'], // rejected: B cannot pay
  ]);
  expect(restingSell).to.be.a('string');
  expect(restingBuy).to.be.a('string');
  const cancels = (
    await client.query<{ outcome: string }>(
      APPLY,
      writeArrays([
        ['cancel', 'A', String(restingSell)],
        ['cancel', 'B', String(restingBuy)],
        ['cancel', 'B', String(restingSell)],
      ]),
    )
  ).rows.map((row) => row.outcome);
  expect(cancels).to.deep.equal(['canceled', 'canceled', 'unknown_order']);
  const statuses = await client.query(STATUSES, [
    ['A', 'B', 'B'],
    [restingSell, restingBuy, restingSell],
  ]);
  // Two orders with one fill each; the third lookup is another account's order: nothing.
  expect(statuses.rows.map((row: { n: number }) => row.n)).to.deep.equal([1, 2]);
}

type Counters = Record<string, { seqScans: number; indexRowsFetched: number }>;

/** This transaction's reads so far, per table (the view includes counts not yet flushed). */
async function readsSoFar(client: pg.PoolClient): Promise<Counters> {
  const result = await client.query<{ relname: string; seq_scan: string; idx_tup_fetch: string }>(
    'SELECT relname, seq_scan, idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = ANY ($1)',
    [TABLES],
  );
  return Object.fromEntries(
    result.rows.map((row) => [
      row.relname,
      { seqScans: Number(row.seq_scan), indexRowsFetched: Number(row.idx_tup_fetch) },
    ]),
  );
}

describe('plans made while the tables were small stay key lookups', function () {
  this.timeout(60_000);
  let database: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    database = await createTestDatabase();
    // One connection: the session that plans is the session that is measured.
    pool = createPool({ databaseUrl: database.url, maxConnections: 1 });
    await applySchema(pool);
    await pool.query(`INSERT INTO accounts VALUES ('A', 100000), ('B', 100000); INSERT INTO symbols VALUES ('X');
      INSERT INTO positions VALUES ('A', 'X', 10000), ('B', 'X', 10000)`);
    // An autovacuum ANALYZE between the growth and the measurement would replan on the grown
    // tables and let a bad small-table plan pass unseen.
    for (const table of TABLES) await pool.query(`ALTER TABLE ${table} SET (autovacuum_enabled = false)`);
  });

  after(async () => {
    await pool?.end();
    await database?.drop();
  });

  it('after the tables grow, a session planned on a fresh exchange reads no whole table', async () => {
    const client = await pool.connect();
    try {
      // Six times: PostgreSQL's own default also settles on a generic plan after five calls.
      for (let round = 0; round < 6; round++) await exerciseEveryPath(client);
      // The exchange grows: many accounts and positions, a deep book on both sides (far from
      // the prices used here), many executions.
      await client.query(`
        INSERT INTO accounts SELECT 'G' || g, 1000 FROM generate_series(1, ${GROWN_ROWS}) g;
        INSERT INTO positions SELECT 'G' || g, 'X', 10 FROM generate_series(1, ${GROWN_ROWS}) g;
        INSERT INTO orders (id, account_id, sym, amount, limit_price, open_shares)
          SELECT nextval('order_ids'), 'G' || g, 'X', CASE WHEN g % 2 = 0 THEN 1 ELSE -1 END,
                 CASE WHEN g % 2 = 0 THEN 1 ELSE 1000 END, 1 FROM generate_series(1, ${GROWN_ROWS}) g;
        INSERT INTO executions (buy_order_id, sell_order_id, shares, price, executed_at)
          SELECT id, id, 1, 1, 0 FROM orders WHERE account_id LIKE 'G%'`);

      await client.query('BEGIN');
      const before = await readsSoFar(client);
      await exerciseEveryPath(client);
      const after = await readsSoFar(client);
      await client.query('ROLLBACK');

      for (const table of TABLES) {
        const seqScans = (after[table]?.seqScans ?? 0) - (before[table]?.seqScans ?? 0);
        const indexRowsFetched = (after[table]?.indexRowsFetched ?? 0) - (before[table]?.indexRowsFetched ?? 0);
        expect({ table, seqScans }).to.deep.equal({ table, seqScans: 0 });
        // A dozen writes and three lookups fetch a few dozen rows through indexes, not thousands.
        expect(indexRowsFetched, `${table}: rows fetched through indexes`).to.be.lessThan(200);
      }
    } finally {
      client.release();
    }
  });
});
