/**
 * Measures the operator API against a large exchange: 100,000 open orders on one
 * symbol, 100,000 executions of history, an account with 10,000 open orders.
 * Each endpoint is asked over real HTTP (the server's own operations port, its
 * own small pool), one request at a time, and its median, 95th percentile and
 * worst time printed. With --write-cost it also times the matcher (apply_writes,
 * batches of 64 orders) with and without the indexes of
 * schema/004_operator_reads.sql, alternating, since they cost every write.
 *
 *   npm run build && node dist/scripts/bench-api.js [--rounds 30] [--write-cost]
 *
 * Scratch databases are made on ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)
 * and dropped at the end.
 */
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { startOperationsPort } from '../server/admin/operations-port.js';
import { applySchema } from '../server/store/migrate.js';
import { createPool } from '../server/store/pool.js';
import { registry } from '../server/observability/metrics.js';
import { configureLog } from '../server/log.js';
import { seededRandom } from '../client/random.js';
import { createDatabase, dropAllDatabases } from './bench-support/databases.js';

const OPEN_ORDERS = 100_000;
const EXECUTIONS = 100_000;
const MARKET_MAKER_ORDERS = 10_000;
const TOKEN = 'bench-token-0123456789abcdef0123456789';

/** A large exchange, written directly in SQL (the matcher would take minutes): consistent, not matched. */
async function seed(pool: pg.Pool): Promise<void> {
  await pool.query(`
    INSERT INTO symbols SELECT 'S' || g FROM generate_series(0, 9) g;
    INSERT INTO symbols VALUES ('RARE');
    INSERT INTO accounts SELECT g::text, 1000000 FROM generate_series(1, 1000) g;
    INSERT INTO positions SELECT a::text, 'S' || s, 500 FROM generate_series(1, 1000) a, generate_series(0, 9) s;
    -- History: execution i between a resting sell (order 2i-1) and the buy that took it
    -- (order 2i), both filled; five of the oldest are the only trades of RARE.
    INSERT INTO orders (id, account_id, sym, amount, limit_price, open_shares)
    SELECT 2 * i - 1 + side, ((i * 7 + side) % 1000 + 1)::text,
           CASE WHEN i <= 5 THEN 'RARE' ELSE 'S' || (i % 10) END,
           CASE WHEN side = 0 THEN -10 ELSE 10 END, 100 + (i % 50) * 0.01 + side, 0
      FROM generate_series(1, ${EXECUTIONS}) i, generate_series(0, 1) side;
    INSERT INTO executions (id, buy_order_id, sell_order_id, shares, price, executed_at)
    SELECT i, 2 * i, 2 * i - 1, 10, 100 + (i % 50) * 0.01, extract(epoch FROM now())::bigint - (${EXECUTIONS} - i)
      FROM generate_series(1, ${EXECUTIONS}) i;
    -- The open book of S0: buys from 50.00 to 99.99, sells from 100.01 to 150.00 (about
    -- 5,000 price levels a side); the first ${MARKET_MAKER_ORDERS} belong to account 1.
    INSERT INTO orders (id, account_id, sym, amount, limit_price, open_shares)
    SELECT ${2 * EXECUTIONS} + g, CASE WHEN g <= ${MARKET_MAKER_ORDERS} THEN '1' ELSE (g % 999 + 2)::text END, 'S0',
           CASE WHEN g % 2 = 0 THEN 1 ELSE -1 END * (g % 100 + 1),
           CASE WHEN g % 2 = 0 THEN 50 + (g * 7919 % 5000) * 0.01 ELSE 100.01 + (g * 7919 % 5000) * 0.01 END,
           g % 100 + 1
      FROM generate_series(1, ${OPEN_ORDERS}) g;
    -- A thin book on the other symbols.
    INSERT INTO orders (id, account_id, sym, amount, limit_price, open_shares)
    SELECT ${2 * EXECUTIONS + OPEN_ORDERS} + g, (g % 1000 + 1)::text, 'S' || (g % 9 + 1),
           CASE WHEN g % 2 = 0 THEN 5 ELSE -5 END, CASE WHEN g % 2 = 0 THEN 99 ELSE 101 END, 5
      FROM generate_series(1, 900) g;
    SELECT setval('order_ids', (SELECT max(id) FROM orders));
    SELECT setval('executions_id_seq', ${EXECUTIONS});
    ANALYZE;`);
}

type Figures = { label: string; median: number; p95: number; max: number; bytes: number };

async function measure(
  base: string,
  path: string,
  rounds: number,
  headers: Record<string, string> = {},
): Promise<Figures> {
  const times: number[] = [];
  let bytes = 0;
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    const response = await fetch(`${base}${path}`, { headers });
    const body = await response.text();
    times.push(performance.now() - started);
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${body}`);
    bytes = body.length;
  }
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.ceil(q * times.length) - 1)] ?? NaN;
  return { label: path, median: at(0.5), p95: at(0.95), max: times.at(-1) ?? NaN, bytes };
}

function row(figures: Figures): string {
  const ms = (value: number) => value.toFixed(1).padStart(8);
  return `${figures.label.padEnd(36)}${ms(figures.median)}${ms(figures.p95)}${ms(figures.max)}${String(figures.bytes).padStart(9)}`;
}

async function apiFigures(rounds: number): Promise<void> {
  const url = await createDatabase(`bench_api_${process.pid}`);
  const pool = createPool({ databaseUrl: url, maxConnections: 2 });
  try {
    await applySchema(pool);
    let started = performance.now();
    await seed(pool);
    console.log(
      `seeded ${OPEN_ORDERS + 900} open orders, ${EXECUTIONS} executions in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    const operations = await startOperationsPort({
      port: 0,
      host: '127.0.0.1',
      databaseUrl: url,
      adminToken: TOKEN,
      metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
      health: async () => ({ server: 'listening', postgres: 'ok', redis: 'off' }),
    });
    const address = operations.server.address();
    const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    try {
      started = performance.now();
      await (await fetch(`${base}/api/symbols`)).text();
      console.log(
        `first /api/symbols (sums the volume of all ${EXECUTIONS} executions once): ${(performance.now() - started).toFixed(1)} ms\n`,
      );
      const auth = { authorization: `Bearer ${TOKEN}` };
      console.log(
        `${'endpoint'.padEnd(36)}${'p50 ms'.padStart(8)}${'p95 ms'.padStart(8)}${'max ms'.padStart(8)}${'bytes'.padStart(9)}`,
      );
      for (const [path, headers] of [
        ['/api/book/S0?depth=20', {}],
        ['/api/book/S0?depth=1000', {}],
        ['/api/trades/S0?limit=50', {}],
        ['/api/trades/S1?limit=1000', {}],
        ['/api/trades/RARE?limit=50', {}],
        ['/api/symbols', {}],
        ['/api/accounts/1', auth],
        ['/api/accounts/1?orders=1000', auth],
        ['/api/accounts/500', auth],
        ['/api/stats', {}],
        ['/', {}],
      ] as Array<[string, Record<string, string>]>) {
        console.log(row(await measure(base, path, rounds, headers)));
      }
    } finally {
      await operations.close();
    }
  } finally {
    await pool.end();
  }
}

/** Random orders around a price, about half of them crossing, as the stress client sends. */
function orderBatches(seed: number, batches: number): unknown[][] {
  const random = seededRandom(seed);
  const result: unknown[][] = [];
  for (let batch = 0; batch < batches; batch++) {
    const accounts: string[] = [];
    const amounts: string[] = [];
    const limits: string[] = [];
    for (let index = 0; index < 64; index++) {
      const buy = random() < 0.5;
      accounts.push(String(1 + Math.floor(random() * 100)));
      amounts.push(String((buy ? 1 : -1) * (1 + Math.floor(random() * 20))));
      limits.push((95 + random() * 10).toFixed(2));
    }
    result.push([Array(64).fill('order'), accounts, Array(64).fill('X'), amounts, limits, Array(64).fill(null)]);
  }
  return result;
}

async function writeCost(rounds: number): Promise<void> {
  const BATCHES = 100;
  const timings: Record<'with' | 'without', number[]> = { with: [], without: [] };
  for (let round = 0; round < rounds; round++) {
    for (const variant of round % 2 === 0 ? (['with', 'without'] as const) : (['without', 'with'] as const)) {
      const url = await createDatabase(`bench_api_writes_${process.pid}`);
      const pool = createPool({ databaseUrl: url, maxConnections: 1 });
      try {
        await applySchema(pool);
        if (variant === 'without') await pool.query('DROP INDEX orders_open_by_account; DROP INDEX orders_traded');
        await pool.query(`INSERT INTO symbols VALUES ('X');
          INSERT INTO accounts SELECT g::text, 100000000 FROM generate_series(1, 100) g;
          INSERT INTO positions SELECT g::text, 'X', 1000000 FROM generate_series(1, 100) g`);
        const client = await pool.connect();
        try {
          let total = 0;
          for (const values of orderBatches(round, BATCHES)) {
            const started = process.hrtime.bigint();
            await client.query(
              'SELECT count(*) FROM apply_writes($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[], $6::bigint[])',
              values,
            );
            total += Number(process.hrtime.bigint() - started) / 1e3;
          }
          timings[variant].push(total / (BATCHES * 64));
        } finally {
          client.release();
        }
      } finally {
        await pool.end();
      }
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
  console.log(
    `\nmatcher, µs per order (${BATCHES} batches of 64 random orders, half crossing; ${rounds} rounds, alternating):`,
  );
  console.log(
    `  with the operator indexes:    median ${median(timings.with).toFixed(1)}  (${timings.with.map((v) => v.toFixed(1)).join(', ')})`,
  );
  console.log(
    `  without them:                 median ${median(timings.without).toFixed(1)}  (${timings.without.map((v) => v.toFixed(1)).join(', ')})`,
  );
}

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '30' }, 'write-cost': { type: 'boolean', default: false } },
});
configureLog('warn', 'pretty');
try {
  await apiFigures(Number(values.rounds));
  if (values['write-cost']) await writeCost(6);
} finally {
  await dropAllDatabases();
}
