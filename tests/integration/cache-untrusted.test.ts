/**
 * Redis is not trusted: whatever anyone writes at a real key, queries and cancels answer
 * exactly as PostgreSQL does, and the entry is removed. And a Redis with a password (AUTH)
 * is used when REDIS_URL carries it.
 */
import { expect } from 'chai';
import { createHmac } from 'node:crypto';
import { createClient } from 'redis';
import { sendOnce } from '../support/client.js';
import { DisposableRedis, SHARED_REDIS_URL } from '../support/redis.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults } from '../support/xml.js';
import { waitFor } from '../support/waiting.js';

type Redis = ReturnType<typeof createClient>;

function orderIdOf(reply: string): string {
  const node = parseResults(reply)[0];
  if (node?.name !== 'opened') throw new Error(`order not opened: ${reply}`);
  return node.attributes.id as string;
}

describe('Redis is not trusted', function () {
  this.timeout(120_000);
  let cached: TestServer;
  let plain: TestServer;
  let redis: Redis;
  let prefix = '';
  /** Orders by what they are: live (open), final by cancel, final by fills, and another account's. */
  const order = { live: '', canceled: '', filled: '', foreign: '' };
  const OWNER = '51';
  const OTHER = '52';

  const query = (account: string, id: string): string =>
    `<transactions id="${account}"><query id="${id}"/></transactions>`;
  const key = (id: string): string => `${prefix}order:${id}`;

  before(async () => {
    cached = await startTestServer({ framing: 'length', redisUrl: SHARED_REDIS_URL });
    plain = await startTestServer({ framing: 'length', database: cached.database });
    await waitFor('redis', () => cached.cache?.connected === true);
    redis = createClient({ url: SHARED_REDIS_URL });
    await redis.connect();
    prefix = `exchange:${await cached.store.instanceId()}:`;
    await sendOnce(
      cached.port,
      `<create><account id="${OWNER}" balance="100000"/><account id="${OTHER}" balance="100000"/>` +
        `<symbol sym="UT"><account id="${OWNER}">100</account><account id="${OTHER}">100</account></symbol></create>`,
    );
    order.live = orderIdOf(
      await sendOnce(cached.port, `<transactions id="${OWNER}"><order sym="UT" amount="5" limit="10"/></transactions>`),
    );
    order.canceled = orderIdOf(
      await sendOnce(cached.port, `<transactions id="${OWNER}"><order sym="UT" amount="3" limit="9"/></transactions>`),
    );
    await sendOnce(cached.port, `<transactions id="${OWNER}"><cancel id="${order.canceled}"/></transactions>`);
    // OTHER's sell at 20 rests; OWNER's buy of 2 at 20 fills it whole (OWNER's live buy at 10 does not cross it).
    order.foreign = orderIdOf(
      await sendOnce(
        cached.port,
        `<transactions id="${OTHER}"><order sym="UT" amount="-2" limit="20"/></transactions>`,
      ),
    );
    order.filled = orderIdOf(
      await sendOnce(cached.port, `<transactions id="${OWNER}"><order sym="UT" amount="2" limit="20"/></transactions>`),
    );
    // Each final order read once through the cache, so Redis holds a genuine entry for it.
    for (const id of [order.canceled, order.filled, order.foreign]) {
      await sendOnce(cached.port, query(id === order.foreign ? OTHER : OWNER, id));
    }
  });

  after(async () => {
    await redis?.close();
    await plain?.close();
    await cached?.close();
  });

  /** Entries an attacker with write access to Redis might leave at a key. */
  async function garbage(): Promise<Array<[string, string]>> {
    await sendOnce(cached.port, query(OWNER, order.canceled)); // (re)writes the genuine entry
    const genuine = await redis.get(key(order.canceled));
    expect(genuine, 'a genuine entry exists').to.be.a('string');
    const signedWith = (secret: string, at: string, payload: string): string =>
      `v1.${createHmac('sha256', secret).update(at).update('\n').update(payload).digest('base64url')}.${payload}`;
    const claimCanceled = (owner: string | null): string =>
      JSON.stringify({ owner, status: { openShares: '0', canceled: { shares: '5', time: '1' }, fills: [] } });
    const payload = (genuine as string).slice((genuine as string).indexOf('.', 3) + 1);
    return [
      ['the number 1', '1'],
      ['an empty object', '{}'],
      ['an empty array', '[]'],
      ['true', 'true'],
      ['null', 'null'],
      ['a JSON string', '"x"'],
      ['an empty string', ''],
      ['not JSON', 'garbage{'],
      ['a NUL byte', '\u0000'],
      ['100 KB of text', 'x'.repeat(100_000)],
      ['a record with a null owner', claimCanceled(null)],
      ['a record with no status', JSON.stringify({ owner: OWNER })],
      ['a record with a null status', JSON.stringify({ owner: OWNER, status: null })],
      [
        'a record whose fills is not an array',
        JSON.stringify({ owner: OWNER, status: { openShares: '0', canceled: null, fills: 5 } }),
      ],
      ['an unsigned record in the old format claiming a cancel for the owner', claimCanceled(OWNER)],
      ['an unsigned record in the old format for the other account', claimCanceled(OTHER)],
      [
        'an unsigned record claiming the order is open',
        JSON.stringify({ owner: OWNER, status: { openShares: '5', canceled: null, fills: [] } }),
      ],
      ['the current format with a made-up MAC', `v1.${'A'.repeat(43)}.${claimCanceled(OWNER)}`],
      [
        'the current format signed with another secret',
        signedWith('not the secret', key(order.live), claimCanceled(OWNER)),
      ],
      ['a genuine entry of another order, copied', genuine as string],
      [
        'a genuine entry given to the other account',
        `${(genuine as string).slice(0, 47)}${payload.replace(`"owner":"${OWNER}"`, `"owner":"${OTHER}"`)}`,
      ],
      ['a genuine entry with its MAC cut short', (genuine as string).slice(0, 40) + (genuine as string).slice(47)],
    ];
  }

  it('queries of every kind of order answer as PostgreSQL does, whatever is at the key, and the entry is removed', async () => {
    const rejectedBefore = cached.cache?.counters.rejected ?? 0;
    const cases = await garbage();
    let checked = 0;
    for (const [what, value] of cases) {
      for (const id of [order.live, order.canceled, order.filled, order.foreign]) {
        for (const account of [OWNER, OTHER]) {
          await redis.set(key(id), value, { EX: 600 });
          const expected = await sendOnce(plain.port, query(account, id));
          const got = await sendOnce(cached.port, query(account, id));
          expect(got, `${what} at order ${id}, queried by ${account}`).to.equal(expected);
          // (A final order's genuine entry is written back after the miss.)
          const genuineHere = id === order.canceled && what.startsWith('a genuine entry of another order');
          if (!genuineHere) expect(await redis.get(key(id)), `${what} at order ${id} is removed`).to.not.equal(value);
          checked++;
        }
      }
    }
    // An entry copied from another order is refused too, except at its own key (where it is genuine).
    expect(checked).to.equal(cases.length * 8);
    expect((cached.cache?.counters.rejected ?? 0) - rejectedBefore).to.be.at.least(cases.length * 8 - 2);
  });

  it('a cancel of a live order cancels it, whatever is at its key; a cancel of a final one answers as PostgreSQL does', async () => {
    const cases = await garbage();
    // Final orders first: a cancel of those changes nothing, so both servers can be asked.
    for (const [what, value] of cases) {
      for (const id of [order.canceled, order.filled, order.foreign]) {
        for (const account of [OWNER, OTHER]) {
          const cancel = `<transactions id="${account}"><cancel id="${id}"/></transactions>`;
          await redis.set(key(id), value, { EX: 600 });
          const got = await sendOnce(cached.port, cancel);
          expect(got, `${what} at order ${id}, canceled by ${account}`).to.equal(await sendOnce(plain.port, cancel));
        }
      }
    }
    // Then live orders, one per kind of garbage: each is canceled, and its money comes back.
    for (const [what, value] of cases) {
      const id = orderIdOf(
        await sendOnce(
          cached.port,
          `<transactions id="${OWNER}"><order sym="UT" amount="1" limit="7"/></transactions>`,
        ),
      );
      await redis.set(key(id), value, { EX: 600 });
      const reply = parseResults(
        await sendOnce(cached.port, `<transactions id="${OWNER}"><cancel id="${id}"/></transactions>`),
      );
      expect(reply[0]?.name, `${what} at a live order: ${JSON.stringify(reply)}`).to.equal('canceled');
      const row = await cached.pool.query<{ open_shares: string }>(
        'SELECT open_shares::text FROM orders WHERE id = $1',
        [id],
      );
      expect(Number(row.rows[0]?.open_shares), `${what}: nothing left open`).to.equal(0);
    }
    // The first live order too, behind the most convincing forgery: a genuine entry of another order.
    await sendOnce(cached.port, query(OWNER, order.canceled));
    const genuine = await redis.get(key(order.canceled));
    expect(genuine).to.be.a('string');
    await redis.set(key(order.live), genuine as string, { EX: 600 });
    const reply = parseResults(
      await sendOnce(cached.port, `<transactions id="${OWNER}"><cancel id="${order.live}"/></transactions>`),
    );
    expect(reply[0]?.name).to.equal('canceled');
    expect(reply[0]?.children[0]?.attributes.shares).to.equal('5');
  });

  it('a genuine entry is still served from Redis', async () => {
    await sendOnce(cached.port, query(OWNER, order.canceled));
    const hits = cached.cache?.counters.hits ?? 0;
    const expected = await sendOnce(plain.port, query(OWNER, order.canceled));
    expect(await sendOnce(cached.port, query(OWNER, order.canceled))).to.equal(expected);
    expect(cached.cache?.counters.hits).to.equal(hits + 1);
  });
});

describe('Redis with a password (AUTH)', function () {
  this.timeout(60_000);
  let redis: DisposableRedis;
  before(async () => {
    redis = await DisposableRedis.start({ password: 'p@ss w/rd:1' });
  });
  after(async () => redis?.kill());

  async function finalOrderQueries(server: TestServer, account: string): Promise<{ query: string; expected: string }> {
    await sendOnce(
      server.port,
      `<create><account id="${account}" balance="1000"/><symbol sym="AU"><account id="${account}">1</account></symbol></create>`,
    );
    const id = orderIdOf(
      await sendOnce(
        server.port,
        `<transactions id="${account}"><order sym="AU" amount="1" limit="10"/></transactions>`,
      ),
    );
    await sendOnce(server.port, `<transactions id="${account}"><cancel id="${id}"/></transactions>`);
    const query = `<transactions id="${account}"><query id="${id}"/></transactions>`;
    return { query, expected: await sendOnce(server.port, query) };
  }

  it('the password in REDIS_URL is used: the cache connects and serves hits', async () => {
    const server = await startTestServer({ framing: 'length', redisUrl: redis.url });
    try {
      await waitFor('redis with a password', () => server.cache?.connected === true);
      const { query, expected } = await finalOrderQueries(server, '61');
      const hits = server.cache?.counters.hits ?? 0;
      expect(await sendOnce(server.port, query)).to.equal(expected);
      expect(server.cache?.counters.hits).to.equal(hits + 1);
      expect(parseResults(expected)[0]?.children[0]?.name).to.equal('canceled');
    } finally {
      await server.close();
    }
  });

  it('a wrong or missing password leaves the cache off and every answer right', async () => {
    for (const url of [redis.urlWithPassword('wrong'), `redis://127.0.0.1:${redis.port}`]) {
      const server = await startTestServer({ framing: 'length', redisUrl: url });
      try {
        const { query, expected } = await finalOrderQueries(server, '62');
        for (let index = 0; index < 3; index++) expect(await sendOnce(server.port, query)).to.equal(expected);
        expect(server.cache?.connected, url.replace(/:[^:@]*@/, ':***@')).to.equal(false);
        expect(server.cache?.counters.hits).to.equal(0);
      } finally {
        await server.close();
      }
    }
  });
});
