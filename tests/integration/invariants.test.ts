/**
 * The invariant checker itself (client/invariants.ts): it must find each kind
 * of corruption, or every "invariants hold" elsewhere proves nothing.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { findInvariantViolations, type ExpectedTotals } from '../../client/invariants.js';
import { applySchema } from '../../server/store/migrate.js';
import { createPool } from '../../server/store/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

describe('invariant checker', function () {
  this.timeout(30_000);
  let database: TestDatabase;
  let pool: pg.Pool;
  const expected: ExpectedTotals = { cash: '1000', shares: { INV: '10' } };

  before(async () => {
    database = await createTestDatabase();
    pool = createPool({ databaseUrl: database.url, maxConnections: 2 });
    await applySchema(pool);
    await pool.query(`INSERT INTO accounts VALUES ('1', 1000); INSERT INTO symbols VALUES ('INV');
      INSERT INTO positions VALUES ('1', 'INV', 10)`);
  });

  after(async () => {
    await pool?.end();
    await database?.drop();
  });

  /** Applies a corruption, returns what the checker says, then undoes it. */
  async function violationsWith(corrupt: string, undo: string): Promise<string[]> {
    await pool.query(corrupt);
    try {
      return await findInvariantViolations(pool, expected);
    } finally {
      await pool.query(undo);
    }
  }

  it('finds nothing in a consistent database', async () => {
    expect(await findInvariantViolations(pool, expected)).to.deep.equal([]);
  });

  it('finds cash that appeared from nowhere', async () => {
    const found = await violationsWith(`UPDATE accounts SET balance = 1001`, `UPDATE accounts SET balance = 1000`);
    expect(found.join('\n')).to.match(/^cash:/);
  });

  it('finds rows referring to an account, symbol or order that does not exist (what foreign keys would catch)', async () => {
    const found = await violationsWith(
      `INSERT INTO positions VALUES ('ghost', 'INV', 0); INSERT INTO executions (buy_order_id, sell_order_id, shares, price, executed_at) VALUES (98, 99, 1, 1, 0)`,
      `DELETE FROM positions WHERE account_id = 'ghost'; DELETE FROM executions`,
    );
    expect(found.filter((line) => line.includes('does not exist'))).to.have.length(2);
  });

  it('finds a crossed book', async () => {
    const found = await violationsWith(
      `UPDATE accounts SET balance = 980; UPDATE positions SET shares = 9;
       INSERT INTO orders (id, account_id, sym, amount, limit_price, open_shares) VALUES (1, '1', 'INV', 1, 20, 1), (2, '1', 'INV', -1, 10, 1)`,
      `DELETE FROM orders; UPDATE accounts SET balance = 1000; UPDATE positions SET shares = 10`,
    );
    expect(found).to.deep.equal(['book of INV is crossed (an open buy could match an open sell)']);
  });
});
