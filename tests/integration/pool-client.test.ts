/**
 * The write lane's connection (pool.ts, BackToBackClient) against a real PostgreSQL:
 * kept from one batch to the next while they run back to back, given back to the pool
 * once the event loop turns without one, and never kept once it failed.
 */
import { expect } from 'chai';
import type pg from 'pg';
import { BackToBackClient, createPool } from '../../server/store/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { waitFor } from '../support/waiting.js';

const backendPid = async (client: pg.PoolClient): Promise<number> =>
  (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? -1;

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('a pool client kept for back-to-back work', function () {
  this.timeout(60_000);
  let database: TestDatabase;
  let pool: pg.Pool;

  before(async () => {
    database = await createTestDatabase();
    pool = createPool({ databaseUrl: database.url, maxConnections: 4 });
  });
  after(async () => {
    await pool.end();
    await database.drop();
  });

  it('runs back to back on one session without the pool, and gives it back when a turn passes without one', async () => {
    const connection = new BackToBackClient(pool);
    const pids = [await connection.run(backendPid)];
    expect(pool.totalCount).to.equal(1);
    expect(pool.idleCount, 'kept, not given back between runs').to.equal(0);
    for (let run = 0; run < 5; run++) {
      pids.push(await connection.run(backendPid));
      expect(pool.idleCount, `kept after run ${run + 2}`).to.equal(0);
    }
    expect(new Set(pids), 'one session for every back-to-back run').to.have.property('size', 1);
    expect(pool.totalCount, 'never went through the pool again').to.equal(1);
    await nextTurn();
    await nextTurn();
    expect(pool.idleCount, 'given back to the pool').to.equal(pool.totalCount);
    // The next run takes whichever idle session the pool hands over, and works.
    expect(await connection.run(backendPid)).to.be.a('number');
  });

  it('runs that overlap each get a session, and every one goes back to the pool', async () => {
    const connection = new BackToBackClient(pool);
    const pids = await Promise.all([1, 2, 3].map(() => connection.run(backendPid)));
    expect(new Set(pids).size, 'three sessions at once').to.equal(3);
    await nextTurn();
    await nextTurn();
    expect(pool.idleCount, 'none left checked out').to.equal(pool.totalCount);
  });

  it('a client the work discarded is destroyed, not kept', async () => {
    const connection = new BackToBackClient(pool);
    const before = pool.totalCount;
    const discarded = await connection.run(async (client, session) => {
      const pid = await backendPid(client);
      session.discard();
      return pid;
    });
    expect(await connection.run(backendPid)).to.not.equal(discarded);
    await nextTurn();
    const sessions = await pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE pid = $1', [discarded]);
    expect(sessions.rowCount, 'the discarded session was closed').to.equal(0);
    expect(pool.totalCount).to.be.at.most(before + 1);
  });

  it('a session that dies during a run is not kept: the next run gets a live one and no error escapes', async () => {
    const connection = new BackToBackClient(pool);
    const killer = await pool.connect();
    try {
      const killed = await connection.run(async (client, session) => {
        const pid = await backendPid(client);
        await killer.query('SELECT pg_terminate_backend($1)', [pid]);
        await waitFor('the client to see its session end', async () => !session.healthy);
        return pid;
      });
      const next = await connection.run(backendPid);
      expect(next).to.be.a('number').and.not.equal(killed);
    } finally {
      killer.release();
    }
  });
});
