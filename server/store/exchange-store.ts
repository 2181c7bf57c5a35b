/**
 * The storage interface handlers call, and its PostgreSQL implementation.
 * Each method is one atomic SERIALIZABLE transaction (retried on serialization
 * failure) and, on the order path, one round trip: matching lives in
 * schema/002_matching.sql. Decimals cross this boundary as strings.
 */
import type pg from 'pg';
import { SymbolLanes } from './symbol-lanes.js';
import { DEFAULT_RETRY_POLICY, withRetry, type RetryCounters, type RetryPolicy } from './retry.js';

export type Fill = { shares: string; price: string; time: string };
export type OrderStatus = {
  /** Unfilled shares still open (positive decimal, or "0"). */
  openShares: string;
  canceled: { shares: string; time: string } | null;
  /** Oldest first. */
  fills: Fill[];
};
export type PlaceOrderResult = { opened: true; orderId: string } | { opened: false; reason: string };
export type CancelResult =
  | { outcome: 'canceled'; shares: string; time: string; fills: Fill[] }
  | { outcome: 'unknown order' | 'nothing open' };

export interface ExchangeStore {
  /** Names this database instance (new after a reset); caches key on it. */
  instanceId(): Promise<string>;
  /** false when the account already exists. */
  createAccount(accountId: string, balance: string): Promise<boolean>;
  ensureSymbol(sym: string): Promise<void>;
  /** null on success, else why not (the account does not exist). */
  addShares(accountId: string, sym: string, shares: string): Promise<string | null>;
  accountExists(accountId: string): Promise<boolean>;
  placeOrder(accountId: string, sym: string, amount: string, limit: string): Promise<PlaceOrderResult>;
  /** null when the order does not exist or belongs to another account. */
  orderStatus(accountId: string, orderId: string): Promise<OrderStatus | null>;
  cancelOrder(accountId: string, orderId: string): Promise<CancelResult>;
}

type FillRow = { shares: string | null; price: string | null; executed_at: string | null };

function fillsOf(rows: FillRow[]): Fill[] {
  const fills: Fill[] = [];
  for (const row of rows) {
    if (row.shares !== null && row.price !== null && row.executed_at !== null) {
      fills.push({ shares: row.shares, price: row.price, time: row.executed_at });
    }
  }
  return fills;
}

export class PostgresExchangeStore implements ExchangeStore {
  readonly retryCounters: RetryCounters = { retries: 0, exhausted: 0 };
  private readonly symbolLanes = new SymbolLanes();

  constructor(private readonly pool: pg.Pool, private readonly retryPolicy: RetryPolicy = DEFAULT_RETRY_POLICY) {}

  /** One statement = one implicit SERIALIZABLE transaction (see pool.ts), retried as a whole. */
  private query<Row extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<Row>> {
    return withRetry(() => this.pool.query<Row>(sql, params), this.retryPolicy, this.retryCounters);
  }

  async instanceId(): Promise<string> {
    const result = await this.query<{ instance_id: string }>('SELECT instance_id FROM exchange_instance', []);
    const row = result.rows[0];
    if (!row) throw new Error('exchange_instance row missing: schema not applied');
    return row.instance_id;
  }

  async createAccount(accountId: string, balance: string): Promise<boolean> {
    const result = await this.query(
      'INSERT INTO accounts (id, balance) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id',
      [accountId, balance],
    );
    return result.rowCount === 1;
  }

  async ensureSymbol(sym: string): Promise<void> {
    await this.query('INSERT INTO symbols (sym) VALUES ($1) ON CONFLICT (sym) DO NOTHING', [sym]);
  }

  async addShares(accountId: string, sym: string, shares: string): Promise<string | null> {
    const result = await this.query<{ problem: string | null }>(
      'SELECT add_shares($1, $2, $3) AS problem',
      [accountId, sym, shares],
    );
    return result.rows[0]?.problem ?? null;
  }

  async accountExists(accountId: string): Promise<boolean> {
    const result = await this.query('SELECT 1 FROM accounts WHERE id = $1', [accountId]);
    return result.rowCount === 1;
  }

  async placeOrder(accountId: string, sym: string, amount: string, limit: string): Promise<PlaceOrderResult> {
    const result = await this.symbolLanes.run(sym, () => this.query<{ order_id: string | null; rejection: string | null }>(
      'SELECT order_id, rejection FROM place_order($1, $2, $3, $4)',
      [accountId, sym, amount, limit],
    ));
    const row = result.rows[0];
    if (row?.order_id) return { opened: true, orderId: row.order_id };
    return { opened: false, reason: row?.rejection ?? 'order not opened' };
  }

  async orderStatus(accountId: string, orderId: string): Promise<OrderStatus | null> {
    const result = await this.query<FillRow & { open_shares: string; canceled_shares: string | null; canceled_at: string | null }>(
      `SELECT o.open_shares, o.canceled_shares, o.canceled_at, f.shares, f.price, f.executed_at
         FROM orders o LEFT JOIN order_fills f ON f.order_id = o.id
        WHERE o.id = $2 AND o.account_id = $1
        ORDER BY f.execution_id`,
      [accountId, orderId],
    );
    const first = result.rows[0];
    if (!first) return null;
    return {
      openShares: first.open_shares,
      canceled: first.canceled_shares !== null && first.canceled_at !== null
        ? { shares: first.canceled_shares, time: first.canceled_at }
        : null,
      fills: fillsOf(result.rows),
    };
  }

  async cancelOrder(accountId: string, orderId: string): Promise<CancelResult> {
    // The CTE runs the function once; fills are joined only when it canceled.
    const result = await this.query<FillRow & { outcome: string; shares_canceled: string | null; time_canceled: string | null }>(
      `WITH c AS MATERIALIZED (SELECT * FROM cancel_order($1, $2))
       SELECT c.outcome, c.shares_canceled, c.time_canceled, f.shares, f.price, f.executed_at
         FROM c LEFT JOIN order_fills f ON c.outcome = 'canceled' AND f.order_id = $2
        ORDER BY f.execution_id`,
      [accountId, orderId],
    );
    const first = result.rows[0];
    if (!first) throw new Error('cancel_order returned no row');
    if (first.outcome === 'canceled' && first.shares_canceled !== null && first.time_canceled !== null) {
      return { outcome: 'canceled', shares: first.shares_canceled, time: first.time_canceled, fills: fillsOf(result.rows) };
    }
    return { outcome: first.outcome === 'nothing open' ? 'nothing open' : 'unknown order' };
  }
}
