/**
 * Faults with real processes, killed for real: the server (kill -9, also a
 * whole multi-process group), Redis (kill -9, SHUTDOWN SAVE and restart with
 * old data, SIGSTOP), PostgreSQL (restart -m fast / -m immediate, a stop),
 * clients that vanish mid-request or never read, and SIGTERM under load.
 * After each fault: every acknowledged order is in SQL as acknowledged, no
 * order the client was told failed exists, and the SPEC invariants hold.
 */
import { expect } from 'chai';
import net from 'node:net';
import pg from 'pg';
import { findInvariantViolations } from '../../client/invariants.js';
import { seededRandom } from '../../client/random.js';
import { LengthClient, frameRequest } from '../support/client.js';
import { ReplyDecoder } from '../../server/protocol/framing.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import {
  LoadDriver,
  OrderLedger,
  checkOrdersAgainstSql,
  createUniverse,
  type LoadStats,
  type SentOrder,
  type Universe,
} from '../support/fault-load.js';
import { DisposableCluster, POSTGRES_SERVER } from '../support/fault-postgres.js';
import { killAllFaultServers, liveGroupMembers, spawnFaultServer, type FaultServer } from '../support/fault-process.js';
import { FaultRedis, redisCommand } from '../support/fault-redis.js';
import { REDIS_SERVER } from '../support/redis.js';
import { skipUnless, titleNeeding } from '../support/requirements.js';
import type { GrantLedger } from '../support/ledger.js';
import { parseResults, type ReplyNode } from '../support/xml.js';
import { sleep, waitFor } from '../support/waiting.js';

function universe(prefix: string): Universe {
  return {
    accounts: Array.from({ length: 6 }, (_, index) => `${prefix}${index + 1}`),
    symbols: [`F${prefix}A`, `F${prefix}B`],
    balance: '1000000000',
    shares: '1000000',
  };
}

/** A pool that survives its server going away (errors of idle clients are ignored). */
function checkPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pool.on('error', () => undefined);
  return pool;
}

/**
 * A database and a check pool of the enclosing describe's own: the checks read whole tables,
 * so each describe's orders must be alone. Dropped after it, once its servers are killed.
 */
function ownDatabase(): { database: TestDatabase; pool: pg.Pool } {
  const own = {} as { database: TestDatabase; pool: pg.Pool };
  before(async () => {
    own.database = await createTestDatabase();
    own.pool = checkPool(own.database.url);
  });
  after(async () => {
    await killAllFaultServers();
    await own.pool.end();
    await own.database.drop();
  });
  return own;
}

/** Every acknowledged order in SQL as acknowledged, no failed one there, no stray rows, and the invariants. */
async function expectDatabaseConsistent(
  pool: pg.Pool,
  ledger: OrderLedger,
  grants: GrantLedger,
  when: string,
): Promise<void> {
  const check = await checkOrdersAgainstSql(pool, ledger);
  expect(check.problems, `orders vs. replies ${when}`).to.deep.equal([]);
  expect(ledger.acked.size, `nothing was acknowledged ${when}`).to.be.greaterThan(0);
  expect(await findInvariantViolations(pool, await grants.totals(pool)), `invariants ${when}`).to.deep.equal([]);
}

/** Short, readable summary of a driver's problems for assertion messages. */
function problemsOf(stats: LoadStats): { anomalies: string[]; unexpectedErrors: string[] } {
  return { anomalies: stats.anomalies.slice(0, 10), unexpectedErrors: stats.unexpectedErrors.slice(0, 10) };
}

function shares(node: ReplyNode): number {
  return node.children.reduce((total, child) => total + Number(child.attributes.shares ?? 0), 0);
}

/** Queries some acknowledged orders through the server: each is known, and its parts add up to its amount. */
async function expectServerKnowsOrders(
  port: number,
  ledger: OrderLedger,
  random: () => number,
  count: number,
): Promise<void> {
  const orders = [...ledger.acked.values()];
  const client = await LengthClient.connect(port);
  try {
    for (let index = 0; index < count && orders.length > 0; index++) {
      const order = orders[Math.floor(random() * orders.length)] as (typeof orders)[number];
      const [status] = parseResults(
        await client.send(`<transactions id="${order.account}"><query id="${order.id}"/></transactions>`),
      );
      expect(status?.name, `query of acknowledged order ${order.id}: ${JSON.stringify(status)}`).to.equal('status');
      expect(shares(status as ReplyNode), `parts of order ${order.id}`).to.equal(Math.abs(Number(order.amount)));
    }
  } finally {
    client.close();
  }
}

/** Sends one tracked order on its own connection; true when it opened. */
async function placeOnce(port: number, ledger: OrderLedger, order: SentOrder): Promise<boolean> {
  let client: LengthClient;
  try {
    client = await LengthClient.connect(port);
  } catch {
    ledger.unknown.set(order.limit, { order, why: 'connect failed' });
    return false;
  }
  try {
    const [node] = parseResults(
      await client.send(
        `<transactions id="${order.account}"><order sym="${order.sym}" amount="${order.amount}" limit="${order.limit}"/></transactions>`,
      ),
    );
    if (node?.name === 'opened') {
      ledger.acked.set(order.limit, { ...order, id: node.attributes.id as string });
      return true;
    }
    ledger.unknown.set(order.limit, { order, why: `${node?.name}: ${node?.text}` });
    return false;
  } catch (error) {
    ledger.unknown.set(order.limit, { order, why: (error as Error).message });
    return false;
  } finally {
    client.close();
  }
}

/**
 * Writes several requests in ONE write (so the server reads them together), never
 * writes again, and collects every length-framed reply until the server closes.
 */
function pipelineInOneWrite(port: number, xmls: string[]): { firstReply: Promise<void>; replies: Promise<string[]> } {
  let markFirst: () => void = () => undefined;
  const firstReply = new Promise<void>((resolve) => (markFirst = resolve));
  const replies = new Promise<string[]>((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () =>
      socket.write(Buffer.concat(xmls.map((xml) => frameRequest(xml)))),
    );
    const decoder = new ReplyDecoder('length');
    const done: string[] = [];
    socket.on('data', (chunk: Buffer) => {
      for (const event of decoder.push(chunk)) {
        if (event.type === 'error') {
          socket.destroy();
          reject(event.error);
          return;
        }
        done.push(event.xml);
        markFirst();
      }
    });
    socket.on('error', reject);
    socket.on('close', () => {
      markFirst();
      resolve(done);
    });
  });
  return { firstReply, replies };
}

function logLines(server: FaultServer, message: string): number {
  return server.log().split(`"msg":"${message}"`).length - 1;
}

/** Resolves with the primary's exit, or rejects after timeoutMs. */
function exitWithin(
  server: FaultServer,
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return Promise.race([
    server.exited,
    sleep(timeoutMs).then(() => {
      throw new Error(`server did not exit within ${timeoutMs} ms:\n${server.log().slice(-3000)}`);
    }),
  ]);
}

describe('faults (real processes, killed for real)', function () {
  this.timeout(300_000);
  after(killAllFaultServers);

  describe('kill -9 of the server under load', () => {
    const own = ownDatabase();

    it('12 SIGKILLs at seeded random moments (3 of them of a WORKERS=2 process group): acknowledged orders survive, failed ones never appear, invariants hold', async () => {
      const random = seededRandom(0x5eed01);
      const world = universe('71');
      const ledger = new OrderLedger();
      const env = { DATABASE_URL: own.database.url, REPLY_FRAMING: 'length' };
      let server = await spawnFaultServer(env);
      const port = server.port;
      const grants = await createUniverse(port, world);
      let lost = 0;
      for (let cycle = 0; cycle < 12; cycle++) {
        const workers = cycle % 4 === 3 ? 2 : 1;
        if (cycle > 0) {
          server = await spawnFaultServer({ ...env, WORKERS: String(workers) }, { port, listeners: workers });
          // After each restart: SQL agrees with every reply given before the kill.
          await expectDatabaseConsistent(own.pool, ledger, grants, `after restart ${cycle}`);
          await expectServerKnowsOrders(port, ledger, random, 10);
        }
        const driver = new LoadDriver({
          port,
          connections: 4,
          seed: 100 + cycle,
          universe: world,
          ledger,
          doomedRate: 0.15,
        }).start();
        await sleep(300 + Math.floor(random() * 1200));
        await server.killGroup();
        await driver.stop();
        expect(problemsOf(driver.stats), `cycle ${cycle}`).to.deep.equal({ anomalies: [], unexpectedErrors: [] });
        expect(driver.stats.opened, `cycle ${cycle} opened orders`).to.be.greaterThan(0);
        expect(driver.stats.rejected, `cycle ${cycle} was told of failures`).to.be.greaterThan(0);
        lost += driver.stats.lostRequests;
      }
      expect(lost, 'requests were in flight at the kills').to.be.greaterThan(0);
      server = await spawnFaultServer(env, { port });
      await expectDatabaseConsistent(own.pool, ledger, grants, 'after the last restart');
      await expectServerKnowsOrders(port, ledger, random, 20);
      server.signal('SIGTERM', 'primary');
      expect((await exitWithin(server, 15_000)).code).to.equal(0);
    });
  });

  describe('kill -9 of one worker under load (WORKERS=2, the primary runs the shared write lane)', () => {
    const own = ownDatabase();

    it('three workers killed in turn: the lane goes on, clients reconnect and are served, acknowledged orders survive, failed ones never appear', async () => {
      const world = universe('75');
      const ledger = new OrderLedger();
      const server = await spawnFaultServer(
        { DATABASE_URL: own.database.url, REPLY_FRAMING: 'length', WORKERS: '2' },
        { listeners: 2 },
      );
      const grants = await createUniverse(server.port, world);
      const driver = new LoadDriver({
        port: server.port,
        connections: 8,
        seed: 175,
        universe: world,
        ledger,
        doomedRate: 0.15,
      }).start();
      try {
        for (let kill = 1; kill <= 3; kill++) {
          await sleep(700);
          const workers = liveGroupMembers(server.pid).filter((pid) => pid !== server.pid);
          expect(workers, `two live workers before kill ${kill}`).to.have.length(2);
          process.kill(workers[kill % 2] as number, 'SIGKILL');
          // The primary replaces it, and the lane keeps answering the other worker meanwhile.
          await waitFor(`replacement worker ${kill}`, () => logLines(server, 'exchange server listening') >= 2 + kill);
        }
        const repliesBefore = driver.stats.replies;
        await sleep(700);
        expect(driver.stats.replies, 'served after the last kill').to.be.greaterThan(repliesBefore);
      } finally {
        await driver.stop();
      }
      expect(problemsOf(driver.stats)).to.deep.equal({ anomalies: [], unexpectedErrors: [] });
      expect(driver.stats.opened).to.be.greaterThan(0);
      expect(driver.stats.rejected, 'was told of failures').to.be.greaterThan(0);
      expect(logLines(server, 'worker died; starting a replacement')).to.equal(3);
      await expectDatabaseConsistent(own.pool, ledger, grants, 'after three workers were killed');
      await expectServerKnowsOrders(server.port, ledger, seededRandom(0x5eed75), 20);
      server.signal('SIGTERM', 'primary');
      expect((await exitWithin(server, 15_000)).code).to.equal(0);
    });
  });

  describe(titleNeeding('Redis killed and restarted under load', REDIS_SERVER), () => {
    let database: TestDatabase;
    let redis: FaultRedis;
    let cached: FaultServer;
    let plain: FaultServer;
    let world: Universe;
    let ledger: OrderLedger;
    let grants: GrantLedger;
    let pool: pg.Pool;

    before(async function () {
      skipUnless(this, REDIS_SERVER);
      database = await createTestDatabase();
      pool = checkPool(database.url);
      redis = await FaultRedis.start();
      cached = await spawnFaultServer({
        DATABASE_URL: database.url,
        REPLY_FRAMING: 'length',
        REDIS_URL: redis.url,
        CACHE_TIMEOUT_MS: '50',
      });
      plain = await spawnFaultServer({ DATABASE_URL: database.url, REPLY_FRAMING: 'length' });
      await waitFor('the cache to connect', () => logLines(cached, 'redis cache connected') >= 1);
      world = universe('72');
      ledger = new OrderLedger();
      grants = await createUniverse(cached.port, world);
    });
    after(async () => {
      await killAllFaultServers();
      // Unset where before() found no redis-server and made these tests pending.
      await redis?.remove();
      await pool?.end();
      await database?.drop();
    });

    /** Quiescent: every order's status (and foreign views of it) is the same through the cached and the uncached server. */
    async function expectSameAnswersAsUncached(when: string): Promise<void> {
      const cachedClient = await LengthClient.connect(cached.port);
      const plainClient = await LengthClient.connect(plain.port);
      try {
        for (const account of world.accounts) {
          const mine = ledger.ackedOf(account);
          const others = [...ledger.acked.values()].filter((order) => order.account !== account).slice(0, 300);
          for (const orders of [mine, others]) {
            if (orders.length === 0) continue;
            const xml = `<transactions id="${account}">${orders.map((order) => `<query id="${order.id}"/>`).join('')}</transactions>`;
            // Twice through the cache: the second read of a final status is a hit.
            for (let pass = 0; pass < 2; pass++) {
              const fromCache = await cachedClient.send(xml);
              const fromDatabase = await plainClient.send(xml);
              if (fromCache !== fromDatabase) {
                const a = parseResults(fromCache);
                const b = parseResults(fromDatabase);
                const differing = a
                  .map((node, index) => [orders[index]?.id, JSON.stringify(node), JSON.stringify(b[index])])
                  .filter(([, x, y]) => x !== y)
                  .slice(0, 5);
                expect.fail(
                  `${when}: cached and uncached answers differ for account ${account}: ${JSON.stringify(differing)}`,
                );
              }
            }
          }
        }
      } finally {
        cachedClient.close();
        plainClient.close();
      }
    }

    async function keysLoadedAtStart(): Promise<number> {
      const info = await redisCommand(redis.port, 'INFO', 'persistence');
      return Number(/rdb_last_load_keys_loaded:(\d+)/.exec(info)?.[1] ?? NaN);
    }

    const phases: Array<{ name: string; down: () => Promise<void>; up: () => Promise<void>; oldData: boolean }> = [
      { name: 'kill -9, restart empty', down: () => redis.kill(), up: () => redis.restart(), oldData: false },
      {
        name: 'SHUTDOWN SAVE, restart with the saved data loaded',
        down: () => redis.shutdownSave(),
        up: () => redis.restart(),
        oldData: true,
      },
      {
        name: 'kill -9, restart with the older dump loaded again',
        down: () => redis.kill(),
        up: () => redis.restart(),
        oldData: true,
      },
    ];

    it('kill -9 and SHUTDOWN SAVE + restart mid-load: no client-visible error at any point, no stale read after it returns', async () => {
      let seed = 1;
      for (const phase of phases) {
        const connectedBefore = logLines(cached, 'redis cache connected');
        const driver = new LoadDriver({
          port: cached.port,
          connections: 4,
          seed: 200 + seed++,
          universe: world,
          ledger,
          cancelRate: 0.25,
          queryRate: 0.35,
        }).start();
        await sleep(700);
        const keysBefore = await redis.dbsize();
        await phase.down();
        await sleep(600);
        await phase.up();
        if (phase.oldData) {
          expect(await keysLoadedAtStart(), `${phase.name}: keys loaded from the dump`).to.be.greaterThan(0);
        }
        await waitFor(
          `${phase.name}: the cache to reconnect`,
          () => logLines(cached, 'redis cache connected') > connectedBefore,
          5_000,
        );
        await sleep(600);
        await driver.stop();
        expect(keysBefore, `${phase.name}: the cache was in use before the fault`).to.be.greaterThan(0);
        expect(problemsOf(driver.stats), phase.name).to.deep.equal({ anomalies: [], unexpectedErrors: [] });
        expect(
          { lost: driver.stats.lostRequests, connectFailures: driver.stats.connectFailures },
          phase.name,
        ).to.deep.equal({ lost: 0, connectFailures: 0 });
        expect(driver.stats.canceled, `${phase.name}: cancels happened`).to.be.greaterThan(0);
        await expectSameAnswersAsUncached(`after ${phase.name}`);
      }
      await expectDatabaseConsistent(pool, ledger, grants, 'after the Redis faults');
    });

    it('a frozen Redis (SIGSTOP) costs at most a cache timeout per request: no error, no stall, no stale read after SIGCONT', async () => {
      const driver = new LoadDriver({
        port: cached.port,
        connections: 4,
        seed: 300,
        universe: world,
        ledger,
        cancelRate: 0.25,
        queryRate: 0.35,
      }).start();
      await sleep(500);
      redis.freeze();
      const frozenAt = Date.now();
      await sleep(2_000);
      redis.thaw();
      await sleep(500);
      await driver.stop();
      expect(problemsOf(driver.stats)).to.deep.equal({ anomalies: [], unexpectedErrors: [] });
      const during = driver.stats.records.filter(
        (record) => record.sentAt >= frozenAt && record.sentAt < frozenAt + 2_000,
      );
      const slow = driver.stats.records
        .filter((record) => record.repliedAt - record.sentAt > 1_000)
        .map((record) => `${record.repliedAt - record.sentAt} ms: ${record.what}`);
      expect(
        slow,
        `CACHE_TIMEOUT_MS=50, yet ${slow.length} requests took over 1 s while Redis was frozen`,
      ).to.deep.equal([]);
      expect(during.length, 'requests were answered while Redis was frozen').to.be.greaterThan(10);
      await expectSameAnswersAsUncached('after SIGCONT');
      await expectDatabaseConsistent(pool, ledger, grants, 'after the freeze');
    });

    it('the cache served hits across the faults (it was really in use)', async () => {
      cached.signal('SIGTERM', 'primary');
      expect((await exitWithin(cached, 15_000)).code).to.equal(0);
      const stopped = cached
        .log()
        .split('\n')
        .find((line) => line.includes('"msg":"stopped"'));
      const counters = (JSON.parse(stopped ?? '{}') as { cache?: { hits: number; errors: number } }).cache;
      expect(counters?.hits, stopped).to.be.greaterThan(0);
      expect(counters?.errors, stopped).to.be.greaterThan(0);
    });
  });

  describe('PostgreSQL restarted under load', () => {
    let cluster: DisposableCluster | null = null;
    after(async () => {
      await killAllFaultServers();
      await cluster?.remove();
    });

    it(
      titleNeeding(
        'restart -m fast, restart -m immediate, and a stop: never a false success, the server reconnects by itself, invariants hold',
        POSTGRES_SERVER,
      ),
      async function () {
        skipUnless(this, POSTGRES_SERVER);
        cluster = await DisposableCluster.create();
        const server = await spawnFaultServer({ DATABASE_URL: cluster.url, REPLY_FRAMING: 'length' });
        const world = universe('73');
        const ledger = new OrderLedger();
        const grants = await createUniverse(server.port, world);
        const faults: Array<{ name: string; run: (c: DisposableCluster) => Promise<unknown> }> = [
          { name: 'pg_ctl restart -m fast', run: (c) => c.restart('fast') },
          { name: 'pg_ctl restart -m immediate', run: (c) => c.restart('immediate') },
          {
            name: 'pg_ctl stop -m fast, 1.5 s down, start',
            run: async (c) => {
              await c.stop('fast');
              await sleep(1_500);
              await c.start();
            },
          },
        ];
        let seed = 1;
        let hitInFlight = 0;
        for (const fault of faults) {
          const driver = new LoadDriver({
            port: server.port,
            connections: 4,
            seed: 400 + seed++,
            universe: world,
            ledger,
            doomedRate: 0.1,
          }).start();
          await sleep(800);
          await fault.run(cluster);
          // The server reconnects by itself: an order opens again within a few seconds.
          const upAt = Date.now();
          let recoveredAt = 0;
          let lastFailure = '';
          while (recoveredAt === 0) {
            expect(
              server.child.exitCode,
              `${fault.name}: the server process died (exit code ${server.child.exitCode}); log: ${server
                .log()
                .slice(-2500)}`,
            ).to.equal(null);
            expect(
              Date.now() - upAt,
              `${fault.name}: no order opened within 5 s of PostgreSQL accepting connections again; last reply: ${
                lastFailure
              }; server log: ${server.log().slice(-1500)}`,
            ).to.be.lessThan(5_000);
            const probe = ledger.newOrder(world.accounts[0] as string, world.symbols[0] as string, '1', 90, false);
            if (await placeOnce(server.port, ledger, probe)) {
              recoveredAt = Date.now();
            } else {
              lastFailure = ledger.unknown.get(probe.limit)?.why ?? '?';
              await sleep(100);
            }
          }
          await sleep(1_000);
          await driver.stop();
          expect(server.child.exitCode, `${fault.name}: the server process is still up`).to.equal(null);
          expect(driver.stats.anomalies, fault.name).to.deep.equal([]);
          expect(driver.stats.opened, `${fault.name}: orders opened`).to.be.greaterThan(0);
          // Errors are allowed only around the outage, never once it is over.
          const lateFailures = driver.stats.records
            .filter((record) => !record.ok && record.sentAt > recoveredAt + 500)
            .map((record) => record.what);
          expect(lateFailures, `${fault.name}: requests failing after recovery`).to.deep.equal([]);
          hitInFlight += driver.stats.records.filter((record) => !record.ok).length;
          const pool = checkPool(cluster.url);
          try {
            await expectDatabaseConsistent(pool, ledger, grants, `after ${fault.name}`);
          } finally {
            await pool.end();
          }
        }
        // A write batch the fault cut off is looked up and answered for real, not failed: such
        // lookups count as hits too.
        const lookedUp = logLines(server, 'write batch failed; its outcome was looked up');
        expect(hitInFlight + lookedUp, 'the faults hit requests (they happened under load)').to.be.greaterThan(0);
        server.signal('SIGTERM', 'primary');
        expect((await exitWithin(server, 15_000)).code).to.equal(0);
      },
    );
  });

  describe('PostgreSQL killed (kill -9 of every process) under load', () => {
    let cluster: DisposableCluster | null = null;
    after(async () => {
      await killAllFaultServers();
      await cluster?.remove();
    });

    // Write batches commit with synchronous_commit off and their replies wait for a WAL flush.
    // The WAL writer is made slow here, so a commit whose reply did not wait would often still
    // be in PostgreSQL's memory when it dies, and be lost with it.
    it(
      titleNeeding(
        '4 crashes of PostgreSQL (one with the server killed too): every acknowledged order, cancel and fill survives, nothing told failed appears, invariants hold',
        POSTGRES_SERVER,
      ),
      async function () {
        skipUnless(this, POSTGRES_SERVER);
        cluster = await DisposableCluster.create(['wal_writer_delay=10000', 'wal_writer_flush_after=1000000']);
        // Every batch commits without the flush (WRITE_FLUSH=after-lock; 'auto' does so only while
        // writers wait for the lock), with two processes sharing the lane.
        const env = { DATABASE_URL: cluster.url, REPLY_FRAMING: 'length', WORKERS: '2', WRITE_FLUSH: 'after-lock' };
        let server = await spawnFaultServer(env, { listeners: 2 });
        const port = server.port;
        const world = universe('74');
        const ledger = new OrderLedger();
        const grants = await createUniverse(port, world);
        const random = seededRandom(0x5eed74);
        let outcomeUnknown = 0;
        // A batch that met a crash is looked up by its token once PostgreSQL is back, and its
        // clients get real outcomes: the server logs each lookup.
        const LOOKED_UP = 'write batch failed; its outcome was looked up';
        let lookedUp = 0;
        let canariesLost = 0;
        for (let cycle = 0; cycle < 4; cycle++) {
          const driver = new LoadDriver({
            port,
            connections: 6,
            seed: 740 + cycle,
            universe: world,
            ledger,
            doomedRate: 0.1,
            cancelRate: 0.2,
            queryRate: 0.2,
          }).start();
          await sleep(600 + Math.floor(random() * 900));
          const alsoTheServer = cycle === 2;
          if (alsoTheServer) {
            lookedUp += logLines(server, LOOKED_UP);
            await server.killGroup();
          }
          // A canary committed without waiting for the flush, right before the crash: that it
          // is gone afterwards shows the crash really discards unflushed commits.
          const canary = new pg.Client({ connectionString: cluster.url });
          await canary.connect();
          await canary.query(`SET synchronous_commit = off; CREATE TABLE IF NOT EXISTS crash_canary (cycle int);
          INSERT INTO crash_canary VALUES (${cycle})`);
          expect(cluster.killEveryProcess(), 'PostgreSQL processes killed').to.be.greaterThan(3);
          await canary.end().catch(() => undefined);
          await cluster.crashed();
          const restarted = cluster;
          await cluster.start().catch((error: unknown) => {
            throw new Error(`${String(error)}\n${restarted.logTail()}`);
          });
          if (alsoTheServer) server = await spawnFaultServer(env, { port, listeners: 2 });
          // Let the load run on until orders open again, then a little longer.
          await waitFor(
            `orders open again after crash ${cycle}`,
            async () =>
              placeOnce(
                port,
                ledger,
                ledger.newOrder(world.accounts[0] as string, world.symbols[0] as string, '1', 90, false),
              ),
            20_000,
          );
          await sleep(500);
          await driver.stop();
          expect(driver.stats.anomalies, `crash ${cycle}`).to.deep.equal([]);
          // Requests that met the crash of PostgreSQL itself (not of the server, in cycle 2).
          if (!alsoTheServer)
            outcomeUnknown += driver.stats.unexpectedErrors.filter((error) => /outcome is unknown/.test(error)).length;
          const pool = checkPool(cluster.url);
          try {
            await expectDatabaseConsistent(pool, ledger, grants, `after crash ${cycle}`);
            const survived = await pool
              .query('SELECT 1 FROM crash_canary WHERE cycle = $1', [cycle])
              .catch(() => ({ rowCount: 0 }));
            if (survived.rowCount === 0) canariesLost++;
          } finally {
            await pool.end();
          }
        }
        expect(canariesLost, 'a crash discarded a commit that was not flushed').to.be.greaterThan(0);
        expect(ledger.canceled.size, 'cancels were acknowledged').to.be.greaterThan(0);
        expect(
          [...ledger.fillsSeen.values()].some((fills) => fills > 0),
          'fills were shown',
        ).to.equal(true);
        lookedUp += logLines(server, LOOKED_UP);
        expect(outcomeUnknown + lookedUp, 'the crashes of PostgreSQL hit requests in flight').to.be.greaterThan(0);
        server.signal('SIGTERM', 'primary');
        expect((await exitWithin(server, 15_000)).code).to.equal(0);
      },
    );
  });

  describe('clients that vanish or never read', () => {
    let database: TestDatabase;
    let pool: pg.Pool;
    let server: FaultServer;
    let world: Universe;
    let ledger: OrderLedger;
    let grants: GrantLedger;

    before(async () => {
      database = await createTestDatabase();
      pool = checkPool(database.url);
      server = await spawnFaultServer({ DATABASE_URL: database.url, REPLY_FRAMING: 'length', GRACE_MS: '100' });
      world = universe('74');
      ledger = new OrderLedger();
      grants = await createUniverse(server.port, world);
    });
    after(async () => {
      await killAllFaultServers();
      await pool.end();
      await database.drop();
    });

    function orderRequest(order: SentOrder): Buffer {
      return frameRequest(
        `<transactions id="${order.account}"><order sym="${order.sym}" amount="${order.amount}" limit="${order.limit}"/></transactions>`,
      );
    }

    /** Connects, writes, then ends the connection the given way; resolves when the socket is closed. */
    function sendAndVanish(data: Buffer[], how: 'destroy' | 'reset' | 'half-close'): Promise<string> {
      return new Promise((resolve) => {
        const socket = net.connect({ host: '127.0.0.1', port: server.port });
        let received = '';
        socket.on('data', (chunk) => (received += chunk.toString()));
        socket.on('error', () => undefined);
        socket.on('close', () => resolve(received));
        socket.setTimeout(15_000, () => socket.destroy());
        socket.on('connect', () => {
          for (const part of data) socket.write(part);
          if (how === 'half-close') socket.end();
          else setTimeout(() => (how === 'reset' ? socket.resetAndDestroy() : socket.destroy()), 5);
        });
      });
    }

    it('half requests then a disconnect (FIN, RST, half-close) apply nothing, while others are served', async () => {
      const watcher = new LoadDriver({
        port: server.port,
        connections: 2,
        seed: 500,
        universe: world,
        ledger,
        doomedRate: 0.1,
      }).start();
      // Limit of each order sent only in part -> how it was cut and dropped.
      const mustNotExist = new Map<string, string>();
      const halfOrder = (how: string) => {
        const order = ledger.newOrder(world.accounts[1] as string, world.symbols[0] as string, '2', 99, false);
        mustNotExist.set(order.limit, how);
        return order;
      };
      const cuts: Array<{ name: string; bytes: (framed: Buffer) => Buffer[] }> = [
        { name: 'length line without its newline', bytes: (framed) => [framed.subarray(0, framed.indexOf(0x0a))] },
        { name: 'length line only', bytes: (framed) => [framed.subarray(0, framed.indexOf(0x0a) + 1)] },
        {
          name: 'half the body',
          bytes: (framed) => [framed.subarray(0, Math.floor((framed.indexOf(0x0a) + 1 + framed.length) / 2))],
        },
        { name: 'all but the last byte', bytes: (framed) => [framed.subarray(0, framed.length - 1)] },
        {
          name: 'the whole <order/> but not </transactions>',
          bytes: (framed) => [framed.subarray(0, framed.length - '</transactions>'.length)],
        },
        {
          name: 'overstated length, then half the body',
          bytes: (framed) => {
            const body = framed.subarray(framed.indexOf(0x0a) + 1);
            return [Buffer.from(`${body.length + 10}\n`), body.subarray(0, Math.floor(body.length / 2))];
          },
        },
        {
          name: 'byte by byte, all but the last',
          bytes: (framed) => [...framed.subarray(0, framed.length - 1)].map((byte) => Buffer.from([byte])),
        },
      ];
      const vanishing: Array<Promise<unknown>> = [];
      const halfCloseReplies: Array<Promise<string>> = [];
      for (let round = 0; round < 4; round++) {
        for (const cut of cuts) {
          for (const how of ['destroy', 'reset', 'half-close'] as const) {
            const reply = sendAndVanish(cut.bytes(orderRequest(halfOrder(`${cut.name}, then ${how}`))), how);
            vanishing.push(reply);
            if (how === 'half-close') halfCloseReplies.push(reply);
          }
        }
        // A complete request, then half of the next one: the first may apply, the second must not.
        const complete = ledger.newOrder(world.accounts[2] as string, world.symbols[1] as string, '1', 98, false);
        ledger.unknown.set(complete.limit, { order: complete, why: 'sent before a half request, then vanished' });
        const half = orderRequest(halfOrder('after a complete request, all but 3 bytes, then destroy'));
        vanishing.push(sendAndVanish([orderRequest(complete), half.subarray(0, half.length - 3)], 'destroy'));
      }
      await Promise.all(vanishing);
      await sleep(1_000); // past GRACE_MS, so a (wrongly) completed half request would have run
      await watcher.stop();
      expect(problemsOf(watcher.stats)).to.deep.equal({ anomalies: [], unexpectedErrors: [] });
      expect(watcher.stats.lostRequests).to.equal(0);
      expect(watcher.stats.opened).to.be.greaterThan(10);
      const slowest = Math.max(...watcher.stats.records.map((record) => record.repliedAt - record.sentAt));
      expect(slowest, 'others were served promptly').to.be.lessThan(2_000);
      // A half-closed incomplete request gets an error reply or nothing, never a result.
      for (const reply of await Promise.all(halfCloseReplies)) {
        expect(reply).to.not.match(/<opened|<status|<canceled/);
      }
      const applied = await pool.query<{ id: string; lim: string }>(
        'SELECT id::text, trim_scale(limit_price)::text AS lim FROM orders WHERE trim_scale(limit_price)::text = ANY($1)',
        [[...mustNotExist.keys()]],
      );
      expect(
        applied.rows.map((row) => `order ${row.id} from: ${mustNotExist.get(row.lim)}`),
        'orders applied from half requests',
      ).to.deep.equal([]);
      await expectDatabaseConsistent(pool, ledger, grants, 'after vanishing clients');
    });

    it('a client pipelining large replies and never reading them is throttled and holds up no one; once it is gone, its work stops', async () => {
      // One buy with 500 fills: each query of it is a ~25 KB reply.
      const [seller, buyer] = world.accounts as [string, string];
      const setup = await LengthClient.connect(server.port);
      // A symbol of its own, so no resting order of the other tests takes part of the sweep.
      const bigSym = 'F74BIG';
      const [createdBig] = parseResults(
        await setup.send(`<create><symbol sym="${bigSym}"><account id="${seller}">500</account></symbol></create>`),
      );
      expect(createdBig?.name).to.equal('created');
      grants.addShares(bigSym, '500');
      const sells = Array.from({ length: 500 }, () => ledger.newOrder(seller, bigSym, '-1', 1, false));
      const sellReplies = parseResults(
        await setup.send(
          `<transactions id="${seller}">${sells
            .map((order) => `<order sym="${order.sym}" amount="-1" limit="${order.limit}"/>`)
            .join('')}</transactions>`,
        ),
      );
      sellReplies.forEach((node, index) => {
        const order = sells[index] as SentOrder;
        expect(node.name).to.equal('opened');
        ledger.acked.set(order.limit, { ...order, id: node.attributes.id as string });
      });
      const big = ledger.newOrder(buyer, bigSym, '500', 2, false);
      const [bigReply] = parseResults(
        await setup.send(
          `<transactions id="${buyer}"><order sym="${big.sym}" amount="500" limit="${big.limit}"/></transactions>`,
        ),
      );
      expect(bigReply?.name).to.equal('opened');
      const bigId = bigReply?.attributes.id as string;
      ledger.acked.set(big.limit, { ...big, id: bigId });
      const [bigStatus] = parseResults(
        await setup.send(`<transactions id="${buyer}"><query id="${bigId}"/></transactions>`),
      );
      expect(bigStatus?.children.filter((child) => child.name === 'executed')).to.have.length(500);
      setup.close();

      // Each pipelined request opens one tracked order (so SQL shows how many were processed) and queries the big one 20 times.
      const pipelined = Array.from({ length: 400 }, () =>
        ledger.newOrder(buyer, world.symbols[1] as string, '1', 50, false),
      );
      for (const order of pipelined)
        ledger.unknown.set(order.limit, { order, why: 'pipelined by a client that never reads' });
      const processed = async () =>
        (
          await pool.query<{ n: string }>(
            'SELECT count(*)::text AS n FROM orders WHERE trim_scale(limit_price)::text = ANY($1)',
            [pipelined.map((order) => order.limit)],
          )
        ).rows[0]?.n;

      const watcher = new LoadDriver({
        port: server.port,
        connections: 2,
        seed: 600,
        universe: world,
        ledger,
        doomedRate: 0.1,
      }).start();
      const greedy = net.connect({ host: '127.0.0.1', port: server.port });
      greedy.on('error', () => undefined);
      await new Promise((resolve) => greedy.once('connect', resolve));
      greedy.pause(); // never reads a byte
      for (const order of pipelined) {
        greedy.write(
          frameRequest(
            `<transactions id="${buyer}"><order sym="${order.sym}" amount="1" limit="${order.limit}"/>${`<query id="${bigId}"/>`.repeat(
              20,
            )}</transactions>`,
          ),
        );
      }
      await sleep(3_000);
      const processedWhileUnread = Number(await processed());
      greedy.destroy();
      await sleep(500);
      const processedAtClose = Number(await processed());
      await sleep(1_000);
      const processedLater = Number(await processed());
      await watcher.stop();

      expect(problemsOf(watcher.stats)).to.deep.equal({ anomalies: [], unexpectedErrors: [] });
      expect(watcher.stats.opened).to.be.greaterThan(10);
      const slowest = Math.max(...watcher.stats.records.map((record) => record.repliedAt - record.sentAt));
      expect(slowest, 'others were served promptly').to.be.lessThan(2_000);
      // Unread replies are bounded by socket buffers (a few MB), i.e. a handful of these ~550 KB replies
      // (7 on this machine); without backpressure it would go on processing all 400.
      expect(processedWhileUnread, 'requests processed for a client that read nothing').to.be.within(1, 40);
      expect(processedLater, 'work for a closed connection continued').to.equal(processedAtClose);
      await expectDatabaseConsistent(pool, ledger, grants, 'after the non-reading client');
    });
  });

  describe('graceful shutdown (SIGTERM) under load', () => {
    for (const variant of [
      { workers: 1, target: 'primary' as const },
      { workers: 2, target: 'group' as const },
    ]) {
      it(`WORKERS=${variant.workers}, SIGTERM to the ${variant.target}: in-flight requests are answered, exit 0, every acknowledged order is stored`, async () => {
        const database = await createTestDatabase();
        const pool = checkPool(database.url);
        try {
          const server = await spawnFaultServer(
            // The slow create below must finish within the shutdown timeout even on a busy machine.
            {
              DATABASE_URL: database.url,
              REPLY_FRAMING: 'length',
              WORKERS: String(variant.workers),
              SHUTDOWN_TIMEOUT_MS: '60000',
            },
            { listeners: variant.workers },
          );
          const world = universe(`75${variant.workers}`);
          const ledger = new OrderLedger();
          const grants = await createUniverse(server.port, world);
          const driver = new LoadDriver({
            port: server.port,
            connections: 4,
            seed: 700 + variant.workers,
            universe: world,
            ledger,
            doomedRate: 0.1,
          }).start();
          await sleep(800);

          // Right before the signal: a slow request (2,000 accounts with no cash), and 40 orders pipelined in one write.
          const slow = await LengthClient.connect(server.port);
          const slowPrefix = `9${variant.workers}`;
          const slowReply = slow.send(
            `<create>${Array.from({ length: 2000 }, (_, index) => `<account id="${slowPrefix}${index}" balance="0"/>`).join('')}</create>`,
          );
          const pipeOrders = Array.from({ length: 40 }, (_, index) =>
            ledger.newOrder(
              world.accounts[index % 6] as string,
              world.symbols[index % 2] as string,
              index % 2 === 0 ? '1' : '-1',
              100,
              false,
            ),
          );
          const pipe = pipelineInOneWrite(
            server.port,
            pipeOrders.map(
              (order) =>
                `<transactions id="${order.account}"><order sym="${order.sym}" amount="${order.amount}" limit="${order.limit}"/></transactions>`,
            ),
          );
          // Both surely received and being worked on: the first pipelined reply is back, and the slow create has begun.
          await pipe.firstReply;
          await waitFor(
            'the slow create to begin',
            async () =>
              Number(
                (
                  await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM accounts WHERE id LIKE $1', [
                    `${slowPrefix}%`,
                  ])
                ).rows[0]?.n,
              ) > 0,
          );
          server.signal('SIGTERM', variant.target);

          // The exit closes every socket, so the replies below are all settled after it.
          const exit = await exitWithin(server, 60_000);
          const pipeReplies = await pipe.replies;
          const slowOutcome = await Promise.allSettled([slowReply]);
          await driver.stop();

          expect(exit, server.log().slice(-2000)).to.deep.equal({ code: 0, signal: null });
          expect(pipeReplies.length, 'pipelined requests received before SIGTERM that got a reply').to.equal(
            pipeOrders.length,
          );
          pipeReplies.forEach((reply, index) => {
            const order = pipeOrders[index] as SentOrder;
            const [node] = parseResults(reply);
            expect(node?.name, JSON.stringify(node)).to.equal('opened');
            ledger.acked.set(order.limit, { ...order, id: node?.attributes.id as string });
          });
          expect(slowOutcome[0]?.status, 'the slow request was answered').to.equal('fulfilled');
          const created = parseResults((slowOutcome[0] as PromiseFulfilledResult<string>).value);
          expect(created.filter((node) => node.name === 'created')).to.have.length(2000);

          expect(problemsOf(driver.stats)).to.deep.equal({ anomalies: [], unexpectedErrors: [] });
          const check = await checkOrdersAgainstSql(pool, ledger);
          expect(check.problems).to.deep.equal([]);
          // A graceful shutdown answers everything it applied: no unanswered order is in the database.
          expect(check.unknownApplied, 'orders applied whose reply never came').to.equal(0);
          expect(await findInvariantViolations(pool, await grants.totals(pool))).to.deep.equal([]);
          // And nothing listens any more.
          const refused = await LengthClient.connect(server.port).then(
            (client) => {
              client.close();
              return false;
            },
            () => true,
          );
          expect(refused, 'connections are refused after the exit').to.equal(true);
        } finally {
          await killAllFaultServers();
          await pool.end();
          await database.drop();
        }
      });
    }
  });
});
