/**
 * The SPEC.md invariants, checked in SQL against a database after a run
 * (by the tests and by the stress client).
 */
import type pg from 'pg';

export type ExpectedTotals = {
  /**
   * Sum of every balance ever given to <create><account> (of the accounts in scope). Unset:
   * cash is not checked (the database does not record it; exchange-admin check without --cash).
   */
  cash?: string;
  /** Per symbol, the shares ever given by <create><symbol>; symbols not listed are not checked. */
  shares: Record<string, string>;
  /**
   * Limit the cash check to these accounts (a stress run on a shared database:
   * valid when they trade only among themselves). Unset: every account.
   */
  accounts?: string[];
};

/** Returns a list of violations (empty when every invariant holds). */
export async function findInvariantViolations(pool: pg.Pool, expected: ExpectedTotals): Promise<string[]> {
  const violations: string[] = [];
  const scope = expected.accounts ?? null;
  const cash =
    expected.cash === undefined
      ? null
      : await pool.query<{ ok: boolean; total: string }>(
          `SELECT (a.total + b.reserved) = $1::numeric AS ok, (a.total + b.reserved)::text AS total
       FROM (SELECT coalesce(sum(balance), 0) AS total FROM accounts
              WHERE $2::text[] IS NULL OR id = ANY($2)) a,
            (SELECT coalesce(sum(open_shares * limit_price), 0) AS reserved FROM orders
              WHERE amount > 0 AND ($2::text[] IS NULL OR account_id = ANY($2))) b`,
          [expected.cash, scope],
        );
  if (cash && !cash.rows[0]?.ok)
    violations.push(`cash: balances + open buy reservations = ${cash.rows[0]?.total}, created ${expected.cash}`);

  const shares = await pool.query<{ sym: string; total: string }>(
    `SELECT s.sym, (coalesce(p.held, 0) + coalesce(o.reserved, 0))::text AS total
       FROM symbols s
       LEFT JOIN (SELECT sym, sum(shares) AS held FROM positions GROUP BY sym) p ON p.sym = s.sym
       LEFT JOIN (SELECT sym, sum(open_shares) AS reserved FROM orders WHERE amount < 0 GROUP BY sym) o ON o.sym = s.sym`,
  );
  for (const row of shares.rows) {
    const created = expected.shares[row.sym];
    if (created === undefined) continue;
    const same = await pool.query<{ same: boolean }>('SELECT $1::numeric = $2::numeric AS same', [row.total, created]);
    if (!same.rows[0]?.same)
      violations.push(`shares of ${row.sym}: positions + open sells = ${row.total}, created ${created}`);
  }

  const negatives = await pool.query<{ what: string }>(
    `SELECT 'balance of ' || id AS what FROM accounts WHERE balance < 0
     UNION ALL SELECT 'position ' || account_id || '/' || sym FROM positions WHERE shares < 0
     UNION ALL SELECT 'open shares of order ' || id FROM orders WHERE open_shares < 0`,
  );
  violations.push(...negatives.rows.map((row) => `negative ${row.what}`));

  const overfilled = await pool.query<{ id: string; amount: string; accounted: string }>(
    `SELECT o.id, o.amount::text, (coalesce(f.filled, 0) + o.open_shares + coalesce(o.canceled_shares, 0))::text AS accounted
       FROM orders o LEFT JOIN (SELECT order_id, sum(shares) AS filled FROM order_fills GROUP BY order_id) f ON f.order_id = o.id
      WHERE coalesce(f.filled, 0) + o.open_shares + coalesce(o.canceled_shares, 0) <> abs(o.amount)`,
  );
  violations.push(
    ...overfilled.rows.map(
      (row) => `order ${row.id}: fills + open + canceled = ${row.accounted}, amount ${row.amount}`,
    ),
  );

  // Rule 3: each fill is at the limit of the order that was open first (the smaller id),
  // and within both limits.
  const badPrices = await pool.query<{ id: string }>(
    `SELECT e.id FROM executions e
       JOIN orders b ON b.id = e.buy_order_id JOIN orders s ON s.id = e.sell_order_id
      WHERE b.amount <= 0 OR s.amount >= 0 OR b.sym <> s.sym
         OR e.price <> (CASE WHEN b.id < s.id THEN b.limit_price ELSE s.limit_price END)
         OR e.price > b.limit_price OR e.price < s.limit_price`,
  );
  violations.push(...badPrices.rows.map((row) => `execution ${row.id} has a wrong price or sides`));

  // A correct matcher never leaves a crossed book: no open buy may be >= an open sell.
  const crossed = await pool.query<{ sym: string }>(
    `SELECT b.sym FROM
       (SELECT sym, max(limit_price) AS bid FROM orders WHERE amount > 0 AND open_shares > 0 GROUP BY sym) b
       JOIN (SELECT sym, min(limit_price) AS ask FROM orders WHERE amount < 0 AND open_shares > 0 GROUP BY sym) s
         ON s.sym = b.sym
      WHERE b.bid >= s.ask`,
  );
  violations.push(...crossed.rows.map((row) => `book of ${row.sym} is crossed (an open buy could match an open sell)`));

  // What foreign keys would enforce (the tables have none, for the matcher's speed: only the
  // functions of schema/002_matching.sql write them, and they check): nothing refers to an
  // account, symbol or order that does not exist.
  const orphans = await pool.query<{ what: string }>(
    `SELECT 'position ' || p.account_id || '/' || p.sym AS what FROM positions p
      WHERE NOT EXISTS (SELECT FROM accounts a WHERE a.id = p.account_id) OR NOT EXISTS (SELECT FROM symbols s WHERE s.sym = p.sym)
     UNION ALL SELECT 'order ' || o.id FROM orders o
      WHERE NOT EXISTS (SELECT FROM accounts a WHERE a.id = o.account_id) OR NOT EXISTS (SELECT FROM symbols s WHERE s.sym = o.sym)
     UNION ALL SELECT 'execution ' || e.id FROM executions e
      WHERE NOT EXISTS (SELECT FROM orders o WHERE o.id = e.buy_order_id) OR NOT EXISTS (SELECT FROM orders o WHERE o.id = e.sell_order_id)`,
  );
  violations.push(
    ...orphans.rows.map((row) => `${row.what} refers to an account, symbol or order that does not exist`),
  );
  return violations;
}
