/**
 * WORKERS=2: where write batches form. With WRITE_QUEUE=shared (the default) both
 * workers forward their orders to the primary's one lane, so writes that arrive on
 * either worker while the lane waits join one batch, and only one writer ever waits
 * for the write lock. With per-worker queues each worker's first write waits for the
 * lock on its own, and the batches stay apart. Each worker gets half the connections.
 * The test holds the write lock itself, so what forms a batch is decided by the test's
 * steps; each batch's size is read from its record in write_batches.
 */
import { expect } from 'chai';
import pg from 'pg';
import { LengthClient, sendOnce } from '../support/client.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { childPids, connectionOwner, spawnServer } from '../support/process.js';
import { sleep, waitFor } from '../support/waiting.js';
import { writeLockWaiters } from '../support/write-lock.js';

const CONNECTIONS = 8;

/** Sizes of the write batches recorded so far, oldest first (a <create> item's record has no order ids). */
async function batchSizes(pool: pg.Pool): Promise<number[]> {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT cardinality(order_ids) AS n FROM write_batches WHERE cardinality(order_ids) > 0 ORDER BY token',
  );
  return rows.map((row) => row.n);
}

/** The worker that accepted the client's connection (the kernel hands it over at once; a busy host may take a moment). */
async function acceptedBy(workers: number[], port: number, client: LengthClient): Promise<number> {
  for (let tries = 0; tries < 500; tries++) {
    const owner = connectionOwner(workers, port, client.localPort);
    if (owner !== null) return owner;
    await sleep(10);
  }
  throw new Error(`no worker accepted the connection from port ${client.localPort}`);
}

/**
 * `perWorker` connections on each worker. The kernel deals connections to the workers as it
 * pleases (they accept from one shared socket), so the test connects until each worker has
 * its share, and closes the rest.
 */
async function connectionsOnEveryWorker(port: number, primary: number, perWorker: number): Promise<LengthClient[]> {
  const workers = childPids(primary);
  expect(workers, 'two workers').to.have.length(2);
  const kept = new Map<number, LengthClient[]>(workers.map((pid) => [pid, []]));
  const spare: LengthClient[] = [];
  for (let attempt = 0; attempt < 200 && [...kept.values()].some((list) => list.length < perWorker); attempt++) {
    const client = await LengthClient.connect(port);
    const owner = await acceptedBy(workers, port, client);
    const list = kept.get(owner);
    if (list && list.length < perWorker) list.push(client);
    else spare.push(client);
    // Give the other worker a chance at the next accept.
    if (attempt % 4 === 3) await sleep(20);
  }
  for (const client of spare) client.close();
  for (const [pid, list] of kept) expect(list, `connections on worker ${pid}`).to.have.length(perWorker);
  return [...kept.values()].flat();
}

describe('WORKERS=2: one write lane for both workers', function () {
  this.timeout(120_000);
  let database: TestDatabase;
  let pool: pg.Pool;

  beforeEach(async () => {
    database = await createTestDatabase();
    pool = new pg.Pool({ connectionString: database.url, max: 3 });
  });
  afterEach(async () => {
    await pool.end();
    await database.drop();
  });

  /**
   * Holds the write lock, sends one order on each of CONNECTIONS connections (the cluster
   * deals connections to the workers in turn), waits for `waiters` writers to queue on
   * the lock and a second more, then lets go. Returns the batch sizes and the replies.
   */
  async function ordersWhileLocked(writeQueue: string, waiters: number) {
    // Both workers listening, so the cluster deals the connections to both.
    const server = await spawnServer(
      { DATABASE_URL: database.url, REPLY_FRAMING: 'length', WORKERS: '2', WRITE_QUEUE: writeQueue },
      { listeners: 2 },
    );
    const clients: LengthClient[] = [];
    const holder = await pool.connect();
    try {
      const accounts = Array.from({ length: CONNECTIONS }, (_, index) => `<account id="${index + 1}" balance="1000"/>`);
      expect(await sendOnce(server.port, `<create>${accounts.join('')}</create>`)).not.to.contain('<error');
      // Batches before this point are not the test's.
      const before = (await batchSizes(pool)).length;
      clients.push(...(await connectionsOnEveryWorker(server.port, server.pid, CONNECTIONS / 2)));
      await holder.query('BEGIN; LOCK TABLE exchange_write_lock IN EXCLUSIVE MODE');
      const replies = clients.map((client, index) =>
        client.send(`<transactions id="${index + 1}"><order sym="X" amount="1" limit="${10 + index}"/></transactions>`),
      );
      await waitFor(
        `${waiters} writer(s) to wait for the write lock`,
        async () => (await writeLockWaiters(pool)) >= waiters,
      );
      // The other writes reach their queues meanwhile (a local round trip each).
      await sleep(1_000);
      const waitersSeen = await writeLockWaiters(pool);
      await holder.query('COMMIT');
      const answered = await Promise.all(replies);
      const sizes = (await batchSizes(pool)).slice(before);
      return { answered, sizes, waitersSeen };
    } finally {
      holder.release();
      for (const client of clients) client.close();
      expect(await server.stop()).to.equal(0);
    }
  }

  it('shared (default): one writer waits for the lock, and the writes of both workers then form one batch', async () => {
    const { answered, sizes, waitersSeen } = await ordersWhileLocked('shared', 1);
    for (const reply of answered) expect(reply).to.match(/<opened [^>]*id="\d+"/);
    expect(waitersSeen).to.equal(1);
    expect(sizes).to.deep.equal([1, CONNECTIONS - 1]);
  });

  it('per-worker: each worker has a writer waiting for the lock, and the batches stay apart', async () => {
    const { answered, sizes, waitersSeen } = await ordersWhileLocked('per-worker', 2);
    for (const reply of answered) expect(reply).to.match(/<opened [^>]*id="\d+"/);
    expect(waitersSeen).to.equal(2);
    expect(sizes.reduce((sum, size) => sum + size, 0)).to.equal(CONNECTIONS);
    expect(Math.max(...sizes)).to.be.below(CONNECTIONS - 1);
  });
});
