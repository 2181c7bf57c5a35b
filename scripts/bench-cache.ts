/**
 * Cache benchmark: the same query-heavy workload (80% queries, 20% orders by
 * default) against a server process without and then with the Redis cache,
 * each on a fresh database seeded identically. Prints requests/s, latency and
 * the cache hit rate, and the ratio between the two runs.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { seededRandom } from '../client/random.js';
import { openChannel } from '../client/wire.js';
import { CachedExchangeStore } from '../server/cache/cached-store.js';
import { RedisReadCache } from '../server/cache/read-cache.js';
import { PostgresExchangeStore, type ExchangeStore } from '../server/store/exchange-store.js';
import { applySchema } from '../server/store/migrate.js';
import { createPool } from '../server/store/pool.js';
import { freePort } from './bench-support/processes.js';

const HELP = `Usage: npm run bench:cache -- [--seconds N] [--connections C] [--query-share Q] [--orders-seeded K]

Runs the workload twice (cache off, cache on), each against its own server process and fresh database.
  --seconds        measured duration of each run (default 10; a 2 s warm-up precedes it)
  --connections    concurrent length-framed connections (default 8)
  --query-share    fraction of requests that are queries (default 0.8; the rest are orders)
  --orders-seeded  orders created before the run, half of them canceled (default 2000)
Environment: ADMIN_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
             REDIS_URL (default redis://127.0.0.1:6379).`;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const adminUrl = process.env.ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

type ServerRun = { port: number; stop: () => Promise<Record<string, unknown>> };

async function startServer(databaseUrl: string, withCache: boolean): Promise<ServerRun> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    REPLY_FRAMING: 'length',
    LOG_LEVEL: 'info',
  };
  if (withCache) env.REDIS_URL = redisUrl;
  else delete env.REDIS_URL;
  const child = spawn(process.execPath, [path.join(root, 'dist/server/main.js')], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (chunk) => (log += chunk.toString()));
  for (let attempt = 0; attempt < 200 && !log.includes('listening'); attempt++)
    await new Promise((r) => setTimeout(r, 50));
  if (!log.includes('listening')) throw new Error(`server did not start:\n${log}`);
  if (withCache)
    for (let attempt = 0; attempt < 100 && !log.includes('redis cache connected'); attempt++)
      await new Promise((r) => setTimeout(r, 50));
  return {
    port,
    stop: () =>
      new Promise((resolve) => {
        // 'close', not 'exit': the shutdown log line may still be in the stderr pipe at exit.
        child.once('close', () => {
          const stopped = log.split('\n').find((line) => line.includes('"msg":"stopped"'));
          if (!stopped) process.stderr.write(`server log had no shutdown line:\n${log.slice(-2000)}\n`);
          resolve(stopped ? (JSON.parse(stopped) as Record<string, unknown>) : {});
        });
        child.kill('SIGTERM');
      }),
  };
}

/** A fresh database of its own for one run, and how to drop it. */
async function createScratchDatabase(name: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name}`);
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

type Result = { label: string; requests: number; seconds: number; latencies: number[]; stats: Record<string, unknown> };

async function runOnce(
  label: string,
  withCache: boolean,
  options: { seconds: number; connections: number; queryShare: number; seeded: number },
): Promise<Result> {
  const name = `exchange_bench_${process.pid}_${withCache ? 'cache' : 'plain'}`;
  const database = await createScratchDatabase(name);
  const server = await startServer(database.url, withCache);
  let measured: Omit<Result, 'stats'>;
  let stats: Record<string, unknown> = {};
  try {
    const accounts = Array.from({ length: 50 }, (_, index) => String(1000 + index));
    const symbols = ['AAA', 'BBB', 'CCC', 'DDD', 'EEE'];
    const seedConnection = await openChannel('length', '127.0.0.1', server.port);
    await seedConnection.send(
      `<create>${accounts.map((id) => `<account id="${id}" balance="100000000"/>`).join('')}${symbols
        .map(
          (sym) =>
            `<symbol sym="${sym}">${accounts.map((id) => `<account id="${id}">1000000</account>`).join('')}</symbol>`,
        )
        .join('')}</create>`,
    );
    const orders: Array<{ account: string; id: string }> = [];
    const seedRandom = seededRandom(42);
    process.stderr.write(`[${label}] seeding ${options.seeded} orders\n`);
    for (let index = 0; index < options.seeded; index++) {
      const account = accounts[Math.floor(seedRandom() * accounts.length)] as string;
      const sym = symbols[index % symbols.length] as string;
      // Non-crossing seed orders (buys low, sells high); every other one is canceled, so half are final.
      const side =
        index % 4 < 2 ? `amount="5" limit="${50 + (index % 7)}"` : `amount="-5" limit="${150 + (index % 7)}"`;
      const reply = await seedConnection.send(
        `<transactions id="${account}"><order sym="${sym}" ${side}/></transactions>`,
      );
      const id = /id="(\d+)"/.exec(reply.slice(reply.indexOf('<opened')))?.[1];
      if (!id) throw new Error(`seed order failed: ${reply}`);
      orders.push({ account, id });
      if (index % 2 === 1)
        await seedConnection.send(`<transactions id="${account}"><cancel id="${id}"/></transactions>`);
    }
    seedConnection.close();

    const connections = await Promise.all(
      Array.from({ length: options.connections }, () => openChannel('length', '127.0.0.1', server.port)),
    );
    const latencies: number[] = [];
    let requests = 0;
    let measuring = false;
    const warmupEnd = Date.now() + 2_000;
    const end = warmupEnd + options.seconds * 1_000;
    await Promise.all(
      connections.map(async (connection, index) => {
        const next = seededRandom(1000 + index);
        while (Date.now() < end) {
          measuring = Date.now() >= warmupEnd;
          let xml: string;
          if (next() < options.queryShare) {
            const order = orders[Math.floor(next() * orders.length)] as { account: string; id: string };
            xml = `<transactions id="${order.account}"><query id="${order.id}"/></transactions>`;
          } else {
            const account = accounts[Math.floor(next() * accounts.length)] as string;
            const sym = symbols[Math.floor(next() * symbols.length)] as string;
            xml = `<transactions id="${account}"><order sym="${sym}" amount="${next() < 0.5 ? '' : '-'}1" limit="${95 + Math.floor(next() * 10)}"/></transactions>`;
          }
          const started = process.hrtime.bigint();
          await connection.send(xml);
          if (measuring) {
            latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
            requests++;
          }
        }
        connection.close();
      }),
    );
    measured = { label, requests, seconds: options.seconds, latencies };
  } finally {
    // The server reports its cache counters in its shutdown log line.
    stats = await server.stop();
    await database.drop();
  }
  return { ...measured, stats };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/**
 * Each kind of cached lookup on its own, with and without Redis, so a kind that
 * does not get faster can be seen (and dropped from the cache).
 */
async function lookupBenchmark(): Promise<void> {
  const name = `exchange_bench_${process.pid}_lookups`;
  const database = await createScratchDatabase(name);
  const pool = createPool({ databaseUrl: database.url, maxConnections: 8 });
  const cache = new RedisReadCache({ url: redisUrl, ttlSeconds: 600, commandTimeoutMs: 1000 });
  try {
    await applySchema(pool);
    const database = new PostgresExchangeStore(pool);
    const cached = await CachedExchangeStore.create(database, cache, pool);
    for (let attempt = 0; attempt < 100 && !cache.connected; attempt++) await new Promise((r) => setTimeout(r, 20));
    await database.createAccount('1', '1000000');
    await database.ensureSymbol('LK');
    await database.addShares('1', 'LK', '1000');
    const ids: string[] = [];
    for (let index = 0; index < 200; index++) {
      const placed = await database.placeOrder('1', 'LK', '1', '10');
      if (!placed.opened) throw new Error(placed.rejection);
      await database.cancelOrder('1', placed.orderId);
      ids.push(placed.orderId);
    }
    const kinds: Array<[string, (store: ExchangeStore, index: number) => Promise<unknown>]> = [
      // Served from the store's in-process memory in both columns (not cached in Redis).
      ['account exists', (store) => store.accountExists('1')],
      ['final order status', (store, index) => store.orderStatus('1', ids[index % ids.length] as string)],
      ['cancel of a final order', (store, index) => store.cancelOrder('1', ids[index % ids.length] as string)],
    ];
    console.log(
      '\nlookup                    postgres µs   redis µs   (mean of 8 concurrent callers x 500 calls, warm cache)',
    );
    for (const [label, lookup] of kinds) {
      const timings: number[] = [];
      for (const store of [database, cached] as ExchangeStore[]) {
        for (let index = 0; index < 200; index++) await lookup(store, index); // warm-up, fills the cache
        const started = process.hrtime.bigint();
        await Promise.all(
          Array.from({ length: 8 }, async (_, caller) => {
            for (let index = 0; index < 500; index++) await lookup(store, index + caller);
          }),
        );
        timings.push(Number(process.hrtime.bigint() - started) / 1e3 / 4000);
      }
      console.log(
        `${label.padEnd(26)}${(timings[0] ?? 0).toFixed(0).padStart(11)}${(timings[1] ?? 0).toFixed(0).padStart(11)}   ${((timings[0] ?? 0) / (timings[1] ?? 1)).toFixed(2)}x`,
      );
    }
  } finally {
    await cache.close();
    await pool.end();
    await database.drop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      connections: { type: 'string' },
      'query-share': { type: 'string' },
      'orders-seeded': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const options = {
    seconds: Number(values.seconds ?? 10),
    connections: Number(values.connections ?? 8),
    queryShare: Number(values['query-share'] ?? 0.8),
    seeded: Number(values['orders-seeded'] ?? 2000),
  };
  const results: Result[] = [];
  for (const [label, withCache] of [
    ['no cache', false],
    ['redis cache', true],
  ] as const) {
    process.stderr.write(`[${label}] running ${options.seconds} s with ${options.connections} connections\n`);
    results.push(await runOnce(label, withCache, options));
  }
  console.log(
    `\ncache benchmark: ${options.connections} connections, ${Math.round(options.queryShare * 100)}% queries, ${options.seconds} s per run, ${new Date().toISOString()}`,
  );
  console.log('run          requests/s   p50 ms   p99 ms   cache hits/misses (hit rate)');
  for (const result of results) {
    const sorted = [...result.latencies].sort((a, b) => a - b);
    const cache = result.stats.cache as { hits: number; misses: number } | string | undefined;
    const cacheText =
      typeof cache === 'object'
        ? `${cache.hits}/${cache.misses} (${((100 * cache.hits) / Math.max(1, cache.hits + cache.misses)).toFixed(1)}%)`
        : 'off';
    console.log(
      `${result.label.padEnd(12)} ${(result.requests / result.seconds).toFixed(0).padStart(10)} ${percentile(sorted, 50).toFixed(2).padStart(8)} ${percentile(sorted, 99).toFixed(2).padStart(8)}   ${cacheText}`,
    );
  }
  const [plain, cached] = results as [Result, Result];
  console.log(`ratio (cache / no cache): ${(cached.requests / Math.max(1, plain.requests)).toFixed(2)}x`);
  await lookupBenchmark();
}

await main();
