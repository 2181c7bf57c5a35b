/**
 * Matcher benchmark: PostgreSQL's time per write inside apply_writes, the serial
 * part of the exchange (every write batch holds the write lock while it runs).
 * Runs against an existing database that already holds accounts, positions and
 * a book (fill one first: start the server on it and drive it with the stress
 * client); use a scratch one. Each batch runs in a SERIALIZABLE transaction
 * that is rolled back, so every try sees the same data (only the sequences
 * move on); the tables are vacuumed between tries.
 *
 *   orders  1000 orders (alternating buys and sells of 3 shares, limits
 *           base..base+9) in one apply_writes call
 *   cancels 1000 cancels of the newest open orders in one call
 *   b64     the same 1000 orders as 16 batches of 64 (the server's largest
 *           batch), each its own transaction, timed after a warm-up pass
 *
 * Prints the median (and lowest) microseconds per write over the tries.
 * --functions names several versions of apply_writes loaded side by side (say the
 * current one and `apply_writes_before`, an older one renamed): each try runs
 * every measurement with each in turn, so a noisy machine affects them alike.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';

const HELP = `Usage: node dist/scripts/bench-sql.js [--tries N] [--base P] [--functions F,G]

  --tries  tries of each measurement; the median is reported (default 5)
  --base   lowest order limit (default 95): set it about 5 below the book's
           prices, so that about 40% of the orders fill (the fill count is printed)
  --functions  versions of apply_writes to compare, comma-separated, each with its
           signature (default apply_writes)
Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/exchange).`;

const { values } = parseArgs({
  options: {
    tries: { type: 'string', default: '5' },
    base: { type: 'string', default: '95' },
    functions: { type: 'string', default: 'apply_writes' },
    help: { type: 'boolean' },
  },
});
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const tries = Number(values.tries);
const base = Number(values.base);
const functions = values.functions.split(',');
if (
  !Number.isInteger(tries) ||
  tries < 1 ||
  !Number.isFinite(base) ||
  !functions.every((name) => /^[a-z_][a-z0-9_]*$/.test(name))
) {
  console.error(HELP);
  process.exit(2);
}
const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/exchange';

const ORDERS = 1000;
const BATCH = 64;

/** The orders, built from the accounts' positions: account, symbol, amount, limit. */
const ORDERS_SQL = `
  SELECT array_agg('order'::text ORDER BY g) AS kinds, array_agg(acc ORDER BY g) AS accounts, array_agg(sym ORDER BY g) AS syms,
         array_agg(amt ORDER BY g) AS amounts, array_agg(lim ORDER BY g) AS limits, array_agg(NULL::bigint ORDER BY g) AS ids
    FROM (SELECT g, (SELECT account_id FROM positions p WHERE p.sym = s.sym ORDER BY account_id OFFSET (g * 7) % 50 LIMIT 1) AS acc, s.sym,
                 CASE WHEN g % 2 = 0 THEN 3 ELSE -3 END::numeric AS amt, ($1::numeric + (g * 13) % 10) AS lim
            FROM generate_series(1, ${ORDERS}) g,
                 LATERAL (SELECT sym FROM symbols ORDER BY sym DESC OFFSET g % (SELECT count(*) FROM symbols) LIMIT 1) s) w
   WHERE $2::int IS NULL OR (g - 1) / ${BATCH} = $2`;
const CANCELS_SQL = `
  SELECT array_agg('cancel'::text ORDER BY id) AS kinds, array_agg(account_id ORDER BY id) AS accounts, array_agg(NULL::text) AS syms,
         array_agg(NULL::numeric) AS amounts, array_agg(NULL::numeric) AS limits, array_agg(id ORDER BY id) AS ids
    FROM (SELECT id, account_id FROM orders WHERE open_shares > 0 ORDER BY id DESC LIMIT ${ORDERS}) o`;
const applySql = (
  name: string,
) => `SELECT count(*)::int AS writes, count(order_id)::int AS opened, coalesce(sum(fill_count), 0)::int AS fills,
         count(*) FILTER (WHERE outcome = 'canceled')::int AS canceled
    FROM ${name}($1, $2, $3, $4, $5, $6)`;

type Batch = {
  kinds: string[];
  accounts: string[];
  syms: string[];
  amounts: string[];
  limits: string[];
  ids: string[];
};
type Outcome = { writes: number; opened: number; fills: number; canceled: number };

async function timed(client: pg.Client, batch: Batch, name: string): Promise<{ micros: number; outcome: Outcome }> {
  await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
  try {
    const started = process.hrtime.bigint();
    const result = await client.query<Outcome>(applySql(name), [
      batch.kinds,
      batch.accounts,
      batch.syms,
      batch.amounts,
      batch.limits,
      batch.ids,
    ]);
    const micros = Number(process.hrtime.bigint() - started) / 1000;
    return { micros, outcome: result.rows[0] as Outcome };
  } finally {
    await client.query('ROLLBACK');
  }
}

function summary(name: string, perWrite: number[], outcome: Outcome): string {
  const sorted = [...perWrite].sort((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as number;
  return (
    `${name.padEnd(8 + Math.max(...functions.map((each) => each.length)))} ${median.toFixed(1).padStart(7)} µs/write median, ${(sorted[0] as number).toFixed(1)} lowest` +
    `  (${outcome.writes} writes: ${outcome.opened} opened, ${outcome.fills} fills, ${outcome.canceled} canceled)`
  );
}

async function main(): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const vacuum = () => client.query('VACUUM orders, executions, accounts, positions');
    const orders = (await client.query<Batch>(ORDERS_SQL, [base, null])).rows[0] as Batch;
    const slices: Batch[] = [];
    for (let slice = 0; slice * BATCH < ORDERS; slice += 1)
      slices.push((await client.query<Batch>(ORDERS_SQL, [base, slice])).rows[0] as Batch);
    const cancels = (await client.query<Batch>(CANCELS_SQL)).rows[0] as Batch;

    const results: Record<string, { perWrite: number[]; outcome: Outcome }> = {};
    const record = (name: string, micros: number, writes: number, outcome: Outcome) => {
      const entry = (results[name] ??= { perWrite: [], outcome });
      entry.perWrite.push(micros / writes);
    };
    for (let attempt = 0; attempt < tries; attempt += 1) {
      // Alternating which goes first, so that neither always runs on a freshly vacuumed cache.
      for (const fn of attempt % 2 === 0 ? functions : [...functions].reverse()) {
        const label = (name: string) => (functions.length === 1 ? name : `${name} ${fn}`);
        await vacuum();
        const placed = await timed(client, orders, fn);
        record(label('orders'), placed.micros, orders.kinds.length, placed.outcome);
        await vacuum();
        const canceled = await timed(client, cancels, fn);
        record(label('cancels'), canceled.micros, cancels.kinds.length, canceled.outcome);
        await vacuum();
        for (const slice of slices) await timed(client, slice, fn); // warm-up pass
        let micros = 0;
        const total: Outcome = { writes: 0, opened: 0, fills: 0, canceled: 0 };
        for (const slice of slices) {
          const run = await timed(client, slice, fn);
          micros += run.micros;
          for (const key of Object.keys(total) as Array<keyof Outcome>) total[key] += run.outcome[key];
        }
        record(label('b64'), micros, ORDERS, total);
      }
    }
    for (const [name, { perWrite, outcome }] of Object.entries(results)) console.log(summary(name, perWrite, outcome));
  } finally {
    await client.end();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
