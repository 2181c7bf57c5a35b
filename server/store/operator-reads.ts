/**
 * The operator's read-only queries (books, trades, symbols, accounts), for the
 * dashboard and the operator API (server/admin/). Nothing here writes or takes
 * the write lock: each call is one REPEATABLE READ READ ONLY transaction, so it
 * sees one snapshot, never waits for a writer, and takes no predicate locks.
 * (A read-only snapshot can show a state no serial order of writers produced
 * only when writers overlap; ours never do: each takes the write lock before
 * its snapshot.) Like the protocol's status reads, an answer waits until what
 * its snapshot saw is on disk (durability.ts).
 *
 * Every query's cost is bounded by what it returns (depth, limit), through the
 * book's own indexes and those of schema/004_operator_reads.sql; a statement
 * timeout bounds anything else. Decimals are NUMERIC text in canonical form
 * (trim_scale: no trailing zeros, as the XML replies print them), never
 * JavaScript numbers.
 */
import type pg from 'pg';
import { DurabilityBarrier, WAL_MARK_COLUMNS, walFlusher, walMarkOf, type WalMarkRow } from './durability.js';
import { withPoolClient } from './pool.js';

export type BookLevel = { price: string; shares: string; orders: number };
export type Book = { sym: string; bids: BookLevel[]; asks: BookLevel[] };
export type Trade = { price: string; shares: string; time: number };
export type SymbolSummary = {
  sym: string;
  /** Best (highest) open buy limit, or null. */
  bid: string | null;
  /** Best (lowest) open sell limit, or null. */
  ask: string | null;
  /** Price of the symbol's latest execution, or null before its first. */
  last: string | null;
  /** Shares traded in the symbol since the exchange's database was created. */
  volume: string;
};
export type AccountPosition = { sym: string; shares: string; reserved: string };
export type OpenOrder = { id: string; sym: string; amount: string; limit: string; open: string };
export type AccountView = {
  id: string;
  balance: string;
  /** Cash held by open buys: the sum of open shares times limit. */
  reservedCash: string;
  /** Shares held, and shares held by open sells (no longer in `shares`), per symbol. */
  positions: AccountPosition[];
  /** Oldest first, at most the limit asked for. */
  openOrders: OpenOrder[];
  openOrderCount: number;
};

/** The largest depth, trade count and open-order list one request may ask for. */
export const READ_LIMITS = { depth: 1000, trades: 1000, openOrders: 1000 } as const;

/** No operator read may run longer than this (a missing index would otherwise hurt the database). */
const STATEMENT_TIMEOUT_MS = 2_000;

type Totals = { volume: string; last: string };

export class OperatorReads {
  private readonly durability: DurabilityBarrier;
  /**
   * Volume and last price per symbol up to execution `seenUpTo`, added to on each
   * symbols() call from the executions after it: exact, and each call reads only
   * what is new. Sound because executions are only inserted by write batches under
   * the write lock, which take their ids under it: once a snapshot sees execution
   * N, every execution with a smaller id is visible to it or was rolled back, and
   * no later snapshot can show one below N that this one missed.
   */
  private tape: { instance: string; seenUpTo: string; totals: Map<string, Totals> } | null = null;
  /** symbols() calls run one at a time, so the tape advances in order. */
  private symbolsTurn: Promise<unknown> = Promise.resolve();

  constructor(private readonly pool: pg.Pool) {
    this.durability = new DurabilityBarrier(walFlusher(pool));
  }

  /** One read-only snapshot; the answer is returned once what it saw is durable. */
  private async snapshot<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const { result, mark } = await this.transaction(work);
    // Waited for with the connection back in the pool: the flush may need one.
    await this.durability.waitFor(walMarkOf(mark));
    return result;
  }

  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<{ result: T; mark: WalMarkRow }> {
    return withPoolClient(this.pool, async (client, connection) => {
      try {
        // No parallel workers: a dashboard's small reads are not worth a worker's start-up.
        await client.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = ${STATEMENT_TIMEOUT_MS};
        SET LOCAL max_parallel_workers_per_gather = 0`);
        const result = await work(client);
        const mark = (await client.query<WalMarkRow>(`SELECT ${WAL_MARK_COLUMNS}`)).rows[0];
        await client.query('COMMIT');
        if (!mark) throw new Error('no WAL position');
        return { result, mark };
      } catch (error) {
        if (connection.healthy) await client.query('ROLLBACK').catch(() => connection.discard());
        throw error;
      }
    });
  }

  /** The aggregated book, best prices first, `depth` levels a side; null for an unknown symbol. */
  book(sym: string, depth: number): Promise<Book | null> {
    return this.snapshot(async (client) => {
      if (!(await symbolExists(client, sym))) return null;
      // Walks orders_open_buys / orders_open_sells in price order and stops after `depth`
      // prices: the cost is the orders at those prices, not the whole book.
      const side = (condition: string, order: string) =>
        client.query<BookLevel>(
          `SELECT trim_scale(limit_price)::text AS price, trim_scale(sum(open_shares))::text AS shares, count(*)::int AS orders
           FROM orders WHERE sym = $1 AND ${condition} AND open_shares > 0
          GROUP BY limit_price ORDER BY limit_price ${order} LIMIT $2`,
          [sym, depth],
        );
      const bids = await side('amount > 0', 'DESC');
      const asks = await side('amount < 0', 'ASC');
      return { sym, bids: bids.rows, asks: asks.rows };
    });
  }

  /**
   * The symbol's latest executions, newest first; null for an unknown symbol.
   * An execution belongs to the incoming order (the one with the larger id), and
   * executions are numbered in the order incoming orders were matched (one write
   * batch at a time, in arrival order), so walking the symbol's traded orders
   * newest first (orders_traded) and each one's own executions newest first gives
   * the executions newest first, stopping after `limit`.
   */
  trades(sym: string, limit: number): Promise<Trade[] | null> {
    return this.snapshot(async (client) => {
      if (!(await symbolExists(client, sym))) return null;
      // The planner cannot know that the walk stops early (it would read and sort every
      // traded order of the symbol: 100 ms for 20,000): walking the index is the only plan.
      await client.query(
        'SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off',
      );
      const result = await client.query<Trade>(
        `SELECT trim_scale(e.price)::text AS price, trim_scale(e.shares)::text AS shares, e.executed_at::float8 AS time
           FROM (SELECT id, amount FROM orders
                  WHERE sym = $1 AND open_shares + coalesce(canceled_shares, 0) < abs(amount)
                  ORDER BY id DESC) o
          CROSS JOIN LATERAL (
                SELECT x.id, x.price, x.shares, x.executed_at FROM executions x
                 WHERE o.amount > 0 AND x.buy_order_id = o.id AND x.sell_order_id < o.id
                UNION ALL
                SELECT x.id, x.price, x.shares, x.executed_at FROM executions x
                 WHERE o.amount < 0 AND x.sell_order_id = o.id AND x.buy_order_id < o.id) e
          ORDER BY o.id DESC, e.id DESC
          LIMIT $2`,
        [sym, limit],
      );
      return result.rows;
    });
  }

  /** Every symbol (by name, in byte order) with its best prices, last price and volume. */
  symbols(): Promise<SymbolSummary[]> {
    const turn = this.symbolsTurn.then(() => this.readSymbols());
    this.symbolsTurn = turn.catch(() => undefined);
    return turn;
  }

  private readSymbols(): Promise<SymbolSummary[]> {
    return this.snapshot(async (client) => {
      const instance =
        (await client.query<{ id: string }>('SELECT instance_id::text AS id FROM exchange_instance')).rows[0]?.id ?? '';
      // A database reset under a running server starts the tape again.
      const tape =
        this.tape?.instance === instance ? this.tape : { instance, seenUpTo: '0', totals: new Map<string, Totals>() };
      const syms = [...tape.totals.keys()];
      const result = await client.query<{
        sym: string;
        bid: string | null;
        ask: string | null;
        last: string | null;
        volume: string;
        seen: string | null;
      }>(
        `WITH news AS (
           SELECT o.sym, sum(e.shares) AS volume, max(e.id) AS seen, (array_agg(e.price ORDER BY e.id DESC))[1] AS last
             FROM executions e JOIN orders o ON o.id = e.buy_order_id
            WHERE e.id > $1::bigint
            GROUP BY o.sym),
         known AS (SELECT * FROM unnest($2::text[], $3::numeric[], $4::numeric[]) AS k(sym, volume, last))
         SELECT s.sym, trim_scale(bid.price)::text AS bid, trim_scale(ask.price)::text AS ask,
                coalesce(n.last, k.last)::text AS last, (coalesce(k.volume, 0) + coalesce(n.volume, 0))::text AS volume,
                n.seen::text AS seen
           FROM symbols s
           LEFT JOIN news n ON n.sym = s.sym
           LEFT JOIN known k ON k.sym = s.sym
           LEFT JOIN LATERAL (SELECT limit_price AS price FROM orders
                               WHERE sym = s.sym AND amount > 0 AND open_shares > 0 ORDER BY limit_price DESC LIMIT 1) bid ON true
           LEFT JOIN LATERAL (SELECT limit_price AS price FROM orders
                               WHERE sym = s.sym AND amount < 0 AND open_shares > 0 ORDER BY limit_price ASC LIMIT 1) ask ON true
          ORDER BY s.sym COLLATE "C"`,
        [
          tape.seenUpTo,
          syms,
          syms.map((sym) => tape.totals.get(sym)?.volume),
          syms.map((sym) => tape.totals.get(sym)?.last),
        ],
      );
      let seenUpTo = BigInt(tape.seenUpTo);
      const totals = new Map<string, Totals>();
      for (const row of result.rows) {
        if (row.seen !== null && BigInt(row.seen) > seenUpTo) seenUpTo = BigInt(row.seen);
        if (row.last !== null) totals.set(row.sym, { volume: row.volume, last: row.last });
      }
      this.tape = { instance, seenUpTo: seenUpTo.toString(), totals };
      return result.rows.map((row) => ({
        sym: row.sym,
        bid: row.bid,
        ask: row.ask,
        last: row.last === null ? null : trimScale(row.last),
        volume: trimScale(row.volume),
      }));
    });
  }

  /** An account's balance, reservations, positions and open orders (the oldest `orderLimit`); null if unknown. */
  account(id: string, orderLimit: number): Promise<AccountView | null> {
    return this.snapshot(async (client) => {
      const account = await client.query<{ balance: string }>(
        'SELECT trim_scale(balance)::text AS balance FROM accounts WHERE id = $1',
        [id],
      );
      const balance = account.rows[0]?.balance;
      if (balance === undefined) return null;
      // orders_open_by_account: the account's open orders only.
      const reserved = await client.query<{ cash: string; count: number }>(
        `SELECT trim_scale(coalesce(sum(open_shares * limit_price) FILTER (WHERE amount > 0), 0))::text AS cash, count(*)::int AS count
           FROM orders WHERE account_id = $1 AND open_shares > 0`,
        [id],
      );
      const positions = await client.query<AccountPosition>(
        `SELECT sym, trim_scale(coalesce(p.shares, 0))::text AS shares, trim_scale(coalesce(r.reserved, 0))::text AS reserved
           FROM (SELECT sym, shares FROM positions WHERE account_id = $1) p
           FULL JOIN (SELECT sym, sum(open_shares) AS reserved FROM orders
                       WHERE account_id = $1 AND open_shares > 0 AND amount < 0 GROUP BY sym) r USING (sym)
          ORDER BY sym COLLATE "C"`,
        [id],
      );
      const orders = await client.query<OpenOrder>(
        `SELECT id::text, sym, trim_scale(amount)::text AS amount, trim_scale(limit_price)::text AS limit, trim_scale(open_shares)::text AS open
           FROM orders o WHERE account_id = $1 AND open_shares > 0 ORDER BY o.id LIMIT $2`,
        [id, orderLimit],
      );
      return {
        id,
        balance,
        reservedCash: reserved.rows[0]?.cash ?? '0',
        positions: positions.rows,
        openOrders: orders.rows,
        openOrderCount: reserved.rows[0]?.count ?? 0,
      };
    });
  }
}

async function symbolExists(client: pg.PoolClient, sym: string): Promise<boolean> {
  return (await client.query('SELECT FROM symbols WHERE sym = $1', [sym])).rowCount === 1;
}

/** NUMERIC text without trailing fractional zeros (as trim_scale prints it). */
function trimScale(text: string): string {
  return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
}
