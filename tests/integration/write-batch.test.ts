/**
 * apply_writes (schema/002_matching.sql) defers what fills and cancels credit
 * (proceeds, bought shares, refunds) to the end of the batch, folding an
 * account's due credit into its next reservation. A batch must decide exactly
 * what the same writes decide one by one: this runs one batch where later
 * orders need earlier credits, and compares it with the writes run singly.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { applySchema } from '../../server/store/migrate.js';
import { createPool } from '../../server/store/pool.js';
import { PostgresExchangeStore } from '../../server/store/exchange-store.js';
import { writeArrays, type Write } from '../support/apply-writes.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

type Row = Record<string, unknown>;

// A: 100 cash, 10 X. B: 100 cash, no X at all. Each comment says what serial execution gives.
const WRITES: Write[] = [
  ['order', 'A', 'X', '-5', '10'], // 1: rests; A holds 5
  ['order', 'B', 'X', '5', '10'], // 2: fills 1; B pays 50 and gets 5 X (a position B never had); A is owed 50
  ['order', 'A', 'X', '10', '14'], // 3: needs 140: only affordable with the 50 A was just paid
  ['order', 'B', 'X', '-5', '14'], // 4: sells the 5 X B just bought; fills 3 at 14; B is owed 70
  ['order', 'B', 'X', '12', '10'], // 5: needs exactly the 120 B now has (50 + 70)
  ['order', 'B', 'X', '1', '1'], // rejected: B has 0 left
  ['order', 'A', 'X', '-11', '50'], // rejected: A holds 5 + 5 = 10 X, not 11
  ['cancel', 'A', '3'], // the 5 still open of order 3: 70 back to A
  ['cancel', 'B', '3'], // another account's order: unknown
  ['order', 'A', 'NOPE', '-1', '1'], // rejected: a sell of a symbol never created
  ['order', 'A', 'NEW', '2', '1'], // 6: a buy of a symbol never created opens and creates it; A pays 2
  ['order', 'B', 'NEW', '-1', '1'], // rejected: NEW exists now, but B holds none
];

const APPLY = `SELECT w.order_id, w.rejection, w.fill_count, w.outcome, w.shares_canceled::text, w.fills
  FROM apply_writes($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::bigint[]) WITH ORDINALITY AS w(
    order_id, rejection, fill_count, outcome, shares_canceled, time_canceled, fills, n) ORDER BY w.n`;

async function freshExchange(): Promise<{ database: TestDatabase; pool: pg.Pool }> {
  const database = await createTestDatabase();
  const pool = createPool({ databaseUrl: database.url, maxConnections: 1 });
  await applySchema(pool);
  await pool.query(`INSERT INTO accounts VALUES ('A', 100), ('B', 100); INSERT INTO symbols VALUES ('X');
    INSERT INTO positions VALUES ('A', 'X', 10)`);
  return { database, pool };
}

async function state(pool: pg.Pool): Promise<Row[][]> {
  const read = async (sql: string) => (await pool.query(sql)).rows as Row[];
  return [
    await read(`SELECT id, balance::text FROM accounts ORDER BY id`),
    await read(`SELECT account_id, sym, shares::text FROM positions ORDER BY account_id, sym`),
    await read(
      `SELECT id, account_id, amount::text, limit_price::text, open_shares::text, canceled_shares::text FROM orders ORDER BY id`,
    ),
    await read(`SELECT buy_order_id, sell_order_id, shares::text, price::text FROM executions ORDER BY id`),
    await read(`SELECT sym FROM symbols ORDER BY sym`),
  ];
}

/** The fills of each row, [shares, price, time], with the time left out. */
function withoutFillTimes(rows: Row[]): Row[] {
  return rows.map((row) => ({
    ...row,
    fills: (row.fills as string[][] | null)?.map(([shares, price]) => [shares, price]) ?? null,
  }));
}

/** Every fill's time (epoch seconds) in the rows. */
function fillTimes(rows: Row[]): number[] {
  return rows.flatMap((row) => ((row.fills as string[][] | null) ?? []).map((fill) => Number(fill[2])));
}

describe('a write batch decides what the same writes decide one by one', function () {
  this.timeout(30_000);
  const opened: Array<{ database: TestDatabase; pool: pg.Pool }> = [];
  after(async () => {
    for (const { database, pool } of opened) {
      await pool.end();
      await database.drop();
    }
  });

  it('later writes see earlier credits (proceeds, bought shares, refunds) exactly as if each had committed', async () => {
    const batched = await freshExchange();
    const single = await freshExchange();
    opened.push(batched, single);

    const startedAt = Math.floor(Date.now() / 1000);
    const batchRows = (await batched.pool.query(APPLY, writeArrays(WRITES))).rows as Row[];
    const singleRows: Row[] = [];
    for (const write of WRITES)
      singleRows.push(...((await single.pool.query(APPLY, writeArrays([write]))).rows as Row[]));
    const endedAt = Math.ceil(Date.now() / 1000);
    // The two runs happen at different moments, so their fills' times may differ by a second
    // (they did, when the runs straddled a second boundary): each is checked against the bounds
    // of the runs instead, and the rest compared exactly.
    expect(fillTimes(batchRows).concat(fillTimes(singleRows)))
      .to.have.length(2)
      .and.to.satisfy(
        (times: number[]) => times.every((time) => time >= startedAt && time <= endedAt),
        `fill times within [${startedAt}, ${endedAt}]`,
      );

    // What serial execution gives, spelled out (see the comments on WRITES).
    expect(
      singleRows.map((row) => row.rejection ?? row.outcome ?? `opened ${row.order_id} with ${row.fill_count} fill(s)`),
    ).to.deep.equal([
      'opened 1 with 0 fill(s)',
      'opened 2 with 1 fill(s)',
      'opened 3 with 0 fill(s)',
      'opened 4 with 1 fill(s)',
      'opened 5 with 0 fill(s)',
      'insufficient_funds',
      'insufficient_shares',
      'canceled',
      'unknown_order',
      'unknown_symbol',
      'opened 6 with 0 fill(s)',
      'insufficient_shares',
    ]);
    const [accounts, positions, , , symbols] = await state(single.pool);
    expect(accounts).to.deep.equal([
      { id: 'A', balance: '78' },
      { id: 'B', balance: '0' },
    ]);
    expect(symbols).to.deep.equal([{ sym: 'NEW' }, { sym: 'X' }]);
    expect(positions).to.deep.equal([
      { account_id: 'A', sym: 'X', shares: '10' },
      { account_id: 'B', sym: 'X', shares: '0' },
    ]);

    // The batch: the same answers (fills of the cancel included, but for their times) and the same final state.
    expect(withoutFillTimes(batchRows)).to.deep.equal(withoutFillTimes(singleRows));
    expect(await state(batched.pool)).to.deep.equal(await state(single.pool));
  });

  // Found in review: with the book read before the reservation, a buy that could not pay walked
  // every crossing resting order first, under the write lock (64 such orders took 3 s against a
  // book of 5,000). Counted, not timed: index scans of orders within the transaction.
  it('an order that cannot pay is rejected without walking the book', async () => {
    const exchange = await freshExchange();
    opened.push(exchange);
    await exchange.pool.query(`INSERT INTO accounts VALUES ('poor', 0)`);
    const resting: Write[] = Array.from(
      { length: 200 },
      (_, index): Write => ['order', 'A', 'X', '-0.01', String(1 + index / 100)],
    );
    const placed = (await exchange.pool.query(APPLY, writeArrays(resting))).rows as Row[];
    expect(placed.filter((row) => row.order_id !== null)).to.have.length(200);

    const indexScans = async (writes: Write[]): Promise<{ scans: number; rows: Row[] }> => {
      const client = await exchange.pool.connect();
      try {
        // The view also holds this session's counts not yet flushed: take the difference.
        const scansSoFar = async () =>
          Number(
            (
              await client.query<{ idx_scan: string }>(
                `SELECT idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'orders'`,
              )
            ).rows[0]?.idx_scan ?? 0,
          );
        await client.query('BEGIN');
        const before = await scansSoFar();
        const rows = (await client.query(APPLY, writeArrays(writes))).rows as Row[];
        const scans = (await scansSoFar()) - before;
        await client.query('ROLLBACK');
        return { scans, rows };
      } finally {
        client.release();
      }
    };
    // The same crossing buy: paid for, it fills against all 200 (one probe each); unpaid, none.
    const paid = await indexScans([['order', 'A', 'X', '5', '10']]);
    expect(paid.rows[0]?.fill_count).to.equal(200);
    expect(paid.scans).to.be.at.least(200);
    const unpaid = await indexScans([['order', 'poor', 'X', '5', '10']]);
    expect(unpaid.rows[0]?.rejection).to.equal('insufficient_funds');
    expect(unpaid.scans).to.be.lessThan(5);
  });
});

describe('the prepared batch statement', function () {
  this.timeout(30_000);

  // A session may lose it (DISCARD ALL, a pooler, a migration that changed apply_writes'
  // result type): nothing committed, so the writes run again and it is prepared anew.
  it('a connection that lost it prepares it again; the writes are applied, not reported unknown', async () => {
    const { database, pool } = await freshExchange();
    try {
      // One connection, so the statement dropped below is the store's own.
      const single = createPool({ databaseUrl: database.url, maxConnections: 1 });
      try {
        const store = new PostgresExchangeStore(single);
        const first = await store.placeOrder('A', 'X', '-1', '10');
        expect(first.opened).to.equal(true);
        await single.query('DEALLOCATE apply_batch');
        const second = await store.placeOrder('A', 'X', '-1', '11');
        expect(second, 'after DEALLOCATE').to.deep.include({ opened: true });
        const third = await store.placeOrder('B', 'X', '2', '11');
        expect(third, 'prepared again').to.deep.include({ opened: true, fills: 2 });
      } finally {
        await single.end();
      }
    } finally {
      await pool.end();
      await database.drop();
    }
  });
});
