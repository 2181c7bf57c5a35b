/**
 * Where a write batch's WAL flush happens (WRITE_FLUSH=auto): apply_writes commits
 * without waiting for the flush only when another writer waits for the write lock,
 * so that the flush never holds up a waiting writer, and synchronously when it is
 * alone. Sessions here play the store's batch message by hand, so each step can be
 * taken in turn.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { applySchema } from '../../server/store/migrate.js';
import { createPool } from '../../server/store/pool.js';
import { writeArrays } from '../support/apply-writes.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { waitFor } from '../support/waiting.js';
import { writeLockWaiters } from '../support/write-lock.js';

/** The store's batch message up to its lock. */
const ARRIVE_AND_LOCK = `BEGIN ISOLATION LEVEL SERIALIZABLE;
SET LOCAL synchronous_commit = on;
LOCK TABLE exchange_write_lock IN EXCLUSIVE MODE`;

/** Runs an empty batch through apply_writes and says which commit it chose. */
async function commitChosenByApplyWrites(client: pg.PoolClient): Promise<string> {
  await client.query('SELECT * FROM apply_writes($1, $2, $3, $4, $5, $6)', writeArrays([]));
  const { rows } = await client.query<{ synchronous_commit: string }>('SHOW synchronous_commit');
  return rows[0]?.synchronous_commit ?? 'unknown';
}

describe('the write batch flushes under the lock only when no writer waits for it', function () {
  this.timeout(60_000);
  let database: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    database = await createTestDatabase();
    pool = createPool({ databaseUrl: database.url, maxConnections: 4 });
    await applySchema(pool);
  });
  after(async () => {
    await pool.end();
    await database.drop();
  });

  it('alone on the lane: a synchronous commit', async () => {
    const client = await pool.connect();
    try {
      await client.query(ARRIVE_AND_LOCK);
      expect(await commitChosenByApplyWrites(client)).to.equal('on');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  });

  it('with a writer waiting for the lock: commits without the flush, and the waiter, then alone, flushes', async () => {
    const [holder, waiter] = await Promise.all([pool.connect(), pool.connect()]);
    try {
      await holder.query(ARRIVE_AND_LOCK);
      const waiterLocked = waiter.query(ARRIVE_AND_LOCK);
      await waitFor('the second writer to wait for the lock', async () => (await writeLockWaiters(pool)) === 1);
      expect(await commitChosenByApplyWrites(holder)).to.equal('off');
      await holder.query('COMMIT');
      await waiterLocked;
      expect(await commitChosenByApplyWrites(waiter)).to.equal('on');
      await waiter.query('COMMIT');
    } finally {
      holder.release();
      waiter.release();
    }
  });
});
