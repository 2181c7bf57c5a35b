/**
 * The Redis read-through cache is never wrong: same answers with and without it,
 * no stale status after a write's reply, survives Redis dying, never serves a
 * reset database's keys, and leaves nothing behind for transactions that failed.
 */
import { expect } from 'chai';
import { createClient } from 'redis';
import { LengthClient, sendOnce } from '../support/client.js';
import { pick, seededRandom } from '../../client/random.js';
import { DisposableRedis, REDIS_SERVER, SHARED_REDIS_URL } from '../support/redis.js';
import { skipUnless, titleNeeding } from '../support/requirements.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults, type ReplyNode } from '../support/xml.js';
import { waitFor } from '../support/waiting.js';

/** Reply text with the volatile parts that legitimately differ between two servers removed: none. */
function statusOf(reply: string): ReplyNode {
  const node = parseResults(reply)[0];
  if (!node) throw new Error(`empty reply: ${reply}`);
  return node;
}

function openShares(node: ReplyNode): number {
  const open = node.children.find((child) => child.name === 'open');
  return open ? Number(open.attributes.shares) : 0;
}

describe('Redis read-through cache', function () {
  this.timeout(120_000);

  describe('answers exactly as PostgreSQL does', () => {
    let cached: TestServer;
    let plain: TestServer;

    before(async () => {
      cached = await startTestServer({ framing: 'length', redisUrl: SHARED_REDIS_URL });
      plain = await startTestServer({ framing: 'length', database: cached.database });
      await waitFor('redis', () => cached.cache?.connected === true);
    });
    after(async () => {
      await plain.close();
      await cached.close();
    });

    it('a randomized concurrent run never shows a stale status, and every final answer matches the uncached server', async () => {
      const accounts = ['11', '12', '13', '14', '15', '16'];
      await sendOnce(
        cached.port,
        `<create>${accounts.map((id) => `<account id="${id}" balance="100000"/>`).join('')}<symbol sym="CQ">${accounts
          .map((id) => `<account id="${id}">1000</account>`)
          .join('')}</symbol></create>`,
      );
      const orders: Array<{ account: string; id: string }> = [];
      const violations: string[] = [];

      const worker = async (seed: number): Promise<void> => {
        const random = seededRandom(seed);
        const client = await LengthClient.connect(cached.port);
        // What this worker has already seen of each order: open shares only shrink, fills only grow.
        const seen = new Map<string, { open: number; fills: number; final: boolean }>();
        const observe = (id: string, node: ReplyNode) => {
          if (node.name !== 'status') return;
          const now = {
            open: openShares(node),
            fills: node.children.filter((c) => c.name === 'executed').length,
            final: openShares(node) === 0,
          };
          const before = seen.get(id);
          if (before && (now.open > before.open || now.fills < before.fills || (before.final && !now.final))) {
            violations.push(`order ${id}: saw ${JSON.stringify(now)} after ${JSON.stringify(before)}`);
          }
          seen.set(id, now);
        };
        for (let step = 0; step < 40; step++) {
          const account = pick(random, accounts);
          const mine = orders.filter((order) => order.account === account);
          if (random() < 0.3 && mine.length > 0) {
            const order = pick(random, mine);
            const reply = parseResults(
              await client.send(
                `<transactions id="${account}"><cancel id="${order.id}"/><query id="${order.id}"/></transactions>`,
              ),
            );
            // After a cancel's reply, the order is final: no later read may show it open.
            if (reply[0]?.name === 'canceled')
              seen.set(order.id, {
                open: 0,
                fills: reply[0].children.filter((c) => c.name === 'executed').length,
                final: true,
              });
            if (reply[1]) observe(order.id, reply[1]);
          } else {
            const amount = `${random() < 0.5 ? '-' : ''}${1 + Math.floor(random() * 9)}`;
            const limit = String(95 + Math.floor(random() * 10));
            const reply = parseResults(
              await client.send(
                `<transactions id="${account}"><order sym="CQ" amount="${amount}" limit="${limit}"/></transactions>`,
              ),
            );
            const id = reply[0]?.attributes.id;
            if (reply[0]?.name === 'opened' && id) orders.push({ account, id });
          }
          if (mine.length > 0) {
            const order = pick(random, mine);
            observe(
              order.id,
              statusOf(await client.send(`<transactions id="${account}"><query id="${order.id}"/></transactions>`)),
            );
          }
        }
        client.close();
      };
      await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((seed) => worker(seed * 7919)));
      expect(violations).to.deep.equal([]);

      // Quiescent: every order (twice, so the second read is a cache hit when final) matches the uncached server.
      for (let pass = 0; pass < 2; pass++) {
        for (const order of orders) {
          const query = `<transactions id="${order.account}"><query id="${order.id}"/></transactions>`;
          expect(await sendOnce(cached.port, query)).to.equal(await sendOnce(plain.port, query));
          const foreign = `<transactions id="${order.account === '11' ? '12' : '11'}"><query id="${order.id}"/><cancel id="${order.id}"/></transactions>`;
          expect(await sendOnce(cached.port, foreign)).to.equal(await sendOnce(plain.port, foreign));
        }
      }
      expect(cached.cache?.counters.hits, 'the cache must actually serve reads').to.be.greaterThan(orders.length / 4);
    });
  });

  it(
    titleNeeding('keeps answering while Redis is down, and uses it again when it is back', REDIS_SERVER),
    async function () {
      skipUnless(this, REDIS_SERVER);
      const redis = await DisposableRedis.start();
      const server = await startTestServer({ framing: 'length', redisUrl: redis.url });
      try {
        await waitFor('redis', () => server.cache?.connected === true);
        await sendOnce(
          server.port,
          '<create><account id="21" balance="1000"/><symbol sym="RD"><account id="21">10</account></symbol></create>',
        );
        const opened = parseResults(
          await sendOnce(server.port, '<transactions id="21"><order sym="RD" amount="2" limit="10"/></transactions>'),
        );
        const id = opened[0]?.attributes.id as string;
        await sendOnce(server.port, `<transactions id="21"><cancel id="${id}"/></transactions>`);
        const query = `<transactions id="21"><query id="${id}"/></transactions>`;
        const expected = await sendOnce(server.port, query);

        await redis.kill();
        for (let index = 0; index < 20; index++) {
          expect(await sendOnce(server.port, query)).to.equal(expected);
          const reply = parseResults(
            await sendOnce(server.port, '<transactions id="21"><order sym="RD" amount="1" limit="10"/></transactions>'),
          );
          expect(reply[0]?.name).to.equal('opened');
        }
        expect(server.cache?.counters.errors ?? 0).to.be.greaterThan(0);

        await redis.restart();
        await waitFor('reconnect to redis', () => server.cache?.connected === true);
        await sendOnce(server.port, query); // refills the (empty) restarted Redis
        const hitsBefore = server.cache?.counters.hits ?? 0;
        expect(await sendOnce(server.port, query)).to.equal(expected);
        expect(server.cache?.counters.hits).to.be.greaterThan(hitsBefore);
      } finally {
        await server.close();
        await redis.kill();
      }
    },
  );

  it('after a database reset, keys of the old database are never served', async () => {
    const first = await startTestServer({ framing: 'length', redisUrl: SHARED_REDIS_URL });
    await waitFor('redis', () => first.cache?.connected === true);
    await sendOnce(
      first.port,
      '<create><account id="31" balance="1000"/><symbol sym="RS"><account id="31">10</account></symbol></create>',
    );
    await sendOnce(first.port, '<transactions id="31"><order sym="RS" amount="1" limit="10"/></transactions>');
    await sendOnce(first.port, '<transactions id="31"><cancel id="1"/><query id="1"/></transactions>');
    const oldInstance = await first.store.instanceId();
    await first.close();

    const second = await startTestServer({ framing: 'length', redisUrl: SHARED_REDIS_URL });
    try {
      await waitFor('redis', () => second.cache?.connected === true);
      const redis = createClient({ url: SHARED_REDIS_URL });
      await redis.connect();
      try {
        expect(await redis.get(`exchange:${oldInstance}:order:1`), 'the old entry is still in Redis').to.not.equal(
          null,
        );
      } finally {
        await redis.close();
      }
      await sendOnce(
        second.port,
        '<create><account id="31" balance="1000"/><symbol sym="RS"><account id="31">10</account></symbol></create>',
      );
      await sendOnce(second.port, '<transactions id="31"><order sym="RS" amount="1" limit="10"/></transactions>');
      const status = statusOf(await sendOnce(second.port, '<transactions id="31"><query id="1"/></transactions>'));
      expect(status.children.map((child) => child.name)).to.deep.equal(['open']);
    } finally {
      await second.close();
    }
  });

  describe('transactions that fail leave no trace', () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ framing: 'length', redisUrl: SHARED_REDIS_URL });
      await waitFor('redis', () => server.cache?.connected === true);
      await sendOnce(
        server.port,
        '<create><account id="41" balance="1000"/><symbol sym="RB"><account id="41">10</account></symbol></create>',
      );
    });
    after(async () => server.close());

    async function cachedEntry(orderId: string): Promise<string | null> {
      const redis = createClient({ url: SHARED_REDIS_URL });
      await redis.connect();
      try {
        return await redis.get(`exchange:${await server.store.instanceId()}:order:${orderId}`);
      } finally {
        await redis.close();
      }
    }

    it('a cancel whose transaction rolls back caches nothing, and the order stays open', async () => {
      const opened = parseResults(
        await sendOnce(server.port, '<transactions id="41"><order sym="RB" amount="1" limit="10"/></transactions>'),
      );
      const id = opened[0]?.attributes.id as string;
      await server.pool.query(
        `CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$`,
      );
      await server.pool.query(
        `CREATE TRIGGER refuse_cancel BEFORE UPDATE ON orders FOR EACH ROW WHEN (OLD.id = ${Number(id)}) EXECUTE FUNCTION refuse_update()`,
      );
      try {
        const reply = parseResults(
          await sendOnce(server.port, `<transactions id="41"><cancel id="${id}"/></transactions>`),
        );
        expect(reply[0]?.name).to.equal('error');
      } finally {
        await server.pool.query('DROP TRIGGER refuse_cancel ON orders; DROP FUNCTION refuse_update()');
      }
      expect(await cachedEntry(id)).to.equal(null);
      const status = statusOf(await sendOnce(server.port, `<transactions id="41"><query id="${id}"/></transactions>`));
      expect(status.children.map((child) => child.name)).to.deep.equal(['open']);
    });

    it('a cancel retried after serialization failures caches only the committed outcome', async () => {
      const opened = parseResults(
        await sendOnce(server.port, '<transactions id="41"><order sym="RB" amount="1" limit="10"/></transactions>'),
      );
      const id = opened[0]?.attributes.id as string;
      // A sequence is not rolled back, so it counts attempts: the first two fail with 40001.
      await server.pool.query('CREATE SEQUENCE cancel_attempts');
      await server.pool.query(`CREATE FUNCTION fail_twice() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF nextval('cancel_attempts') <= 2 THEN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$`);
      await server.pool.query(
        `CREATE TRIGGER fail_cancel BEFORE UPDATE ON orders FOR EACH ROW WHEN (OLD.id = ${Number(id)}) EXECUTE FUNCTION fail_twice()`,
      );
      const retriesBefore = server.store.retryCounters.retries;
      try {
        const reply = parseResults(
          await sendOnce(server.port, `<transactions id="41"><cancel id="${id}"/></transactions>`),
        );
        expect(reply[0]?.name).to.equal('canceled');
      } finally {
        await server.pool.query(
          'DROP TRIGGER fail_cancel ON orders; DROP FUNCTION fail_twice(); DROP SEQUENCE cancel_attempts',
        );
      }
      expect(server.store.retryCounters.retries - retriesBefore).to.equal(2);
      // "v1.<MAC>.<JSON>"
      const text = (await cachedEntry(id)) ?? '';
      expect(text).to.match(/^v1\.[A-Za-z0-9_-]{43}\./);
      const entry = JSON.parse(text.slice(text.indexOf('.', 3) + 1)) as {
        owner: string;
        status: { openShares: string; canceled: unknown };
      } | null;
      expect(entry?.owner).to.equal('41');
      expect(entry?.status.openShares).to.equal('0');
      const row = await server.pool.query<{ canceled_shares: string }>(
        'SELECT canceled_shares::text FROM orders WHERE id = $1',
        [id],
      );
      expect(row.rows[0]?.canceled_shares).to.equal('1');
    });
  });
});
