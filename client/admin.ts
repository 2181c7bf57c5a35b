#!/usr/bin/env node
/**
 * exchange-admin: the operator's command line. book, trades, symbols and account
 * read the server's HTTP API (the metrics port), so they give exactly what the
 * dashboard shows, need no database credentials, honour the operator token, and
 * cost the database only the API's bounded queries. check needs the database
 * itself (DATABASE_URL): it runs the SPEC invariant checker, whole-table SQL
 * that no HTTP endpoint should offer, in one read-only snapshot.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { findInvariantViolations } from './invariants.js';

const HELP = `Usage: exchange-admin COMMAND [options]

Commands (read through the server's HTTP API, the metrics port):
  book SYM        the book by price level: bids from the highest, asks from the lowest
  trades SYM      the latest executions, newest first
  symbols         every symbol: best bid, best ask, last price, volume
  account ID      balance, reserved cash, positions, open orders (needs ADMIN_TOKEN)
Command (reads the database directly):
  check           the SPEC invariants (no negative balance or position, no order filled
                  beyond its amount, fills at the resting limit, no crossed book, nothing
                  orphaned; with --cash and --shares, conservation too); exit 1 on any violation

Options:
  --url URL            the server's HTTP API (default http://127.0.0.1:9464, or EXCHANGE_API_URL)
  --depth N            book: price levels a side (default 20, at most 1000)
  --limit N            trades: how many (default 50, at most 1000)
  --orders N           account: open orders listed (default 100, at most 1000)
  --database-url URL   check: the database (default: DATABASE_URL)
  --cash TOTAL         check: the cash ever created (sum of the balances accounts were created with)
  --shares SYM=TOTAL   check: the shares of SYM ever created (repeatable)
  --json               print the answer as JSON (the API's own JSON; check: {"violations": [...]})
  --help               this text

The operator token for account is read from ADMIN_TOKEN (never a flag: command lines are
visible to every user of the machine). check reads every table: on a large exchange run it
against a replica or at a quiet time; it never writes and takes no lock a writer waits for.
Exit status: 0 on success, 1 on a violation, an unknown symbol or account, or a server or
database that cannot be reached, 2 on bad usage.`;

class UsageError extends Error {}

type Options = {
  url: string;
  depth: string;
  limit: string;
  orders: string;
  databaseUrl: string | null;
  cash: string | undefined;
  shares: Record<string, string>;
  json: boolean;
};

function table(header: string[], rows: string[][], rightAligned = true): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (rightAligned ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0)))
      .join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

async function getApi(options: Options, path: string, headers: Record<string, string> = {}): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(new URL(path, options.url), { headers });
  } catch (error) {
    throw new Error(
      `cannot reach the exchange's HTTP API at ${options.url} (${(error as { cause?: Error }).cause?.message ?? String(error)}); is METRICS_PORT set, and is --url right?`,
    );
  }
  const body = (await response.json().catch(() => null)) as unknown;
  if (!response.ok) {
    const message = (body as { error?: string } | null)?.error ?? `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

type Level = { price: string; shares: string; orders: number };

async function run(command: string, args: string[], options: Options): Promise<number> {
  const print = (value: unknown, text: () => string) =>
    process.stdout.write(`${options.json ? JSON.stringify(value, null, 2) : text()}\n`);
  const needOne = (what: string) => {
    if (args.length !== 1) throw new UsageError(`${command} takes one ${what}`);
    return encodeURIComponent(args[0] as string);
  };
  switch (command) {
    case 'book': {
      const book = (await getApi(options, `/api/book/${needOne('symbol')}?depth=${options.depth}`)) as {
        sym: string;
        bids: Level[];
        asks: Level[];
      };
      print(book, () => {
        const rows = Array.from({ length: Math.max(book.bids.length, book.asks.length) }, (_, index) => {
          const bid = book.bids[index];
          const ask = book.asks[index];
          return [
            bid ? String(bid.orders) : '',
            bid?.shares ?? '',
            bid?.price ?? '',
            ask?.price ?? '',
            ask?.shares ?? '',
            ask ? String(ask.orders) : '',
          ];
        });
        return `${book.sym}\n${table(['orders', 'shares', 'bid', 'ask', 'shares', 'orders'], rows)}`;
      });
      return 0;
    }
    case 'trades': {
      const trades = (await getApi(options, `/api/trades/${needOne('symbol')}?limit=${options.limit}`)) as Array<{
        price: string;
        shares: string;
        time: number;
      }>;
      print(trades, () =>
        trades.length === 0
          ? 'no trades'
          : table(
              ['time (UTC)', 'price', 'shares'],
              trades.map((trade) => [
                new Date(trade.time * 1000).toISOString().replace('.000Z', 'Z'),
                trade.price,
                trade.shares,
              ]),
            ),
      );
      return 0;
    }
    case 'symbols': {
      if (args.length !== 0) throw new UsageError('symbols takes no argument');
      const symbols = (await getApi(options, '/api/symbols')) as Array<{
        sym: string;
        bid: string | null;
        ask: string | null;
        last: string | null;
        volume: string;
      }>;
      print(symbols, () =>
        symbols.length === 0
          ? 'no symbols'
          : table(
              ['sym', 'bid', 'ask', 'last', 'volume'],
              symbols.map((symbol) => [
                symbol.sym,
                symbol.bid ?? '-',
                symbol.ask ?? '-',
                symbol.last ?? '-',
                symbol.volume,
              ]),
            ),
      );
      return 0;
    }
    case 'account': {
      const token = process.env.ADMIN_TOKEN ?? '';
      if (token === '') throw new Error("account needs the operator token in ADMIN_TOKEN (the server's own)");
      const account = (await getApi(options, `/api/accounts/${needOne('account id')}?orders=${options.orders}`, {
        authorization: `Bearer ${token}`,
      })) as {
        id: string;
        balance: string;
        reservedCash: string;
        openOrderCount: number;
        positions: Array<{ sym: string; shares: string; reserved: string }>;
        openOrders: Array<{ id: string; sym: string; amount: string; limit: string; open: string }>;
      };
      print(account, () =>
        [
          `account ${account.id}: balance ${account.balance}, reserved by open buys ${account.reservedCash}`,
          '',
          account.positions.length === 0
            ? 'no positions'
            : table(
                ['sym', 'shares', 'reserved by open sells'],
                account.positions.map((position) => [position.sym, position.shares, position.reserved]),
              ),
          '',
          `${account.openOrderCount} open order${account.openOrderCount === 1 ? '' : 's'}${account.openOrders.length < account.openOrderCount ? ` (the oldest ${account.openOrders.length} below)` : ''}`,
          ...(account.openOrders.length === 0
            ? []
            : [
                table(
                  ['id', 'sym', 'amount', 'limit', 'open'],
                  account.openOrders.map((order) => [order.id, order.sym, order.amount, order.limit, order.open]),
                ),
              ]),
        ].join('\n'),
      );
      return 0;
    }
    case 'check': {
      if (args.length !== 0) throw new UsageError('check takes no argument');
      if (!options.databaseUrl) throw new UsageError('check needs the database: --database-url or DATABASE_URL');
      // One connection, so that every statement of the checker runs in this one read-only snapshot.
      const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 1 });
      pool.on('error', () => undefined);
      let violations: string[];
      try {
        await pool.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        violations = await findInvariantViolations(pool, { cash: options.cash, shares: options.shares });
        await pool.query('COMMIT');
      } catch (error) {
        throw new Error(`cannot check the database: ${(error as Error).message}`);
      } finally {
        await pool.end();
      }
      const checked = [
        'balances and positions not negative',
        'fills within amounts',
        'fills at the resting limit',
        'no crossed book',
        'no orphans',
      ];
      if (options.cash !== undefined) checked.push('cash conserved');
      if (Object.keys(options.shares).length > 0)
        checked.push(`shares conserved (${Object.keys(options.shares).join(', ')})`);
      print({ violations, checked }, () =>
        violations.length === 0
          ? `invariants hold: ${checked.join('; ')}`
          : `${violations.length} violation${violations.length === 1 ? '' : 's'}:\n${violations.map((violation) => `  ${violation}`).join('\n')}`,
      );
      return violations.length === 0 ? 0 : 1;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

function count(name: string, text: string | undefined, fallback: number): string {
  if (text === undefined) return String(fallback);
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 1000)
    throw new UsageError(`--${name} must be a whole number from 1 to 1000`);
  return text;
}

async function main(): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      options: {
        url: { type: 'string' },
        depth: { type: 'string' },
        limit: { type: 'string' },
        orders: { type: 'string' },
        'database-url': { type: 'string' },
        cash: { type: 'string' },
        shares: { type: 'string', multiple: true },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      allowPositionals: true,
    });
    if (values.help) {
      process.stdout.write(`${HELP}\n`);
      return 0;
    }
    const [command, ...args] = positionals;
    if (command === undefined) throw new UsageError('a command is needed: book, trades, symbols, account or check');
    const shares: Record<string, string> = {};
    for (const pair of values.shares ?? []) {
      const match = /^([A-Za-z0-9]+)=(\d+(?:\.\d+)?)$/.exec(pair);
      if (!match) throw new UsageError(`--shares takes SYM=TOTAL, not ${JSON.stringify(pair)}`);
      shares[match[1] as string] = match[2] as string;
    }
    if (values.cash !== undefined && !/^\d+(\.\d+)?$/.test(values.cash))
      throw new UsageError('--cash takes a decimal amount');
    const options: Options = {
      url: values.url ?? (process.env.EXCHANGE_API_URL || 'http://127.0.0.1:9464'),
      depth: count('depth', values.depth, 20),
      limit: count('limit', values.limit, 50),
      orders: count('orders', values.orders, 100),
      databaseUrl: values['database-url'] ?? (process.env.DATABASE_URL || null),
      cash: values.cash,
      shares,
      json: values.json ?? false,
    };
    return await run(command, args, options);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(
        `exchange-admin: ${(error as Error).message}\nTry 'exchange-admin --help' for more information.\n`,
      );
      return 2;
    }
    process.stderr.write(`exchange-admin: ${(error as Error).message}\n`);
    return 1;
  }
}

// Piped into `head` and the like: a closed stdout is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});
process.exitCode = await main();
