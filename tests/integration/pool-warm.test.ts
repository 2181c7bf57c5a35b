/**
 * Kept connections (pool-warmer.ts) against a real PostgreSQL: opened before the server
 * serves, used by requests instead of new ones, and reopened without any request after
 * PostgreSQL dropped them.
 */
import { expect } from 'chai';
import pg from 'pg';
import { createPool, poolWarmed } from '../../server/store/pool.js';
import { sendRequest } from '../support/client.js';
import { ADMIN_DATABASE_URL, createTestDatabase, type TestDatabase } from '../support/database.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { waitFor } from '../support/waiting.js';

/** The backends connected to one database, from another database's session. */
async function sessionsOf(admin: pg.Client, database: string): Promise<number[]> {
  const result = await admin.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY pid',
    [database],
  );
  return result.rows.map((row) => row.pid);
}

describe('kept database connections', function () {
  this.timeout(60_000);
  let admin: pg.Client;

  before(async () => {
    admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
    await admin.connect();
  });
  after(() => admin.end());

  describe('a pool with a minimum', () => {
    let database: TestDatabase;
    let pool: pg.Pool;

    before(async () => {
      database = await createTestDatabase();
    });
    afterEach(async () => {
      if (!pool.ending) await pool.end();
    });
    after(() => database.drop());

    it('opens them at start, and reopens them by itself when PostgreSQL terminates them', async () => {
      const failures: Error[] = [];
      pool = createPool({
        databaseUrl: database.url,
        maxConnections: 6,
        minConnections: 3,
        onWarmFailure: (error) => failures.push(error),
      });
      await poolWarmed(pool);
      const first = await sessionsOf(admin, database.name);
      expect(first, 'three sessions before any work').to.have.length(3);
      expect(pool.idleCount).to.equal(3);

      await admin.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [first]);
      await waitFor('three new sessions', async () => {
        const now = await sessionsOf(admin, database.name);
        return now.length === 3 && now.every((pid) => !first.includes(pid));
      });
      expect(pool.totalCount, 'the pool holds the new ones').to.equal(3);
      expect(failures, 'PostgreSQL was up: no try failed').to.deep.equal([]);
      // And they work.
      const answer = await pool.query<{ one: number }>('SELECT 1 AS one');
      expect(answer.rows[0]?.one).to.equal(1);
    });

    it('retries while PostgreSQL refuses, and stops once the pool ends', async () => {
      // Nothing listens on port 1: every try fails, and is retried with back-off.
      const url = new URL(database.url);
      url.port = '1';
      const failures: Error[] = [];
      pool = createPool({
        databaseUrl: url.toString(),
        maxConnections: 2,
        minConnections: 1,
        onWarmFailure: (error) => failures.push(error),
      });
      let rejected: unknown = null;
      await poolWarmed(pool).catch((error: unknown) => {
        rejected = error;
      });
      expect(rejected, 'the first fill reports its failure').to.be.instanceOf(Error);
      await waitFor('two more tries', () => failures.length >= 3, 5_000);
      await pool.end();
      const tries = failures.length;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(failures.length, 'no try after the pool ended').to.be.at.most(tries + 1);
    });

    it('a pool without a minimum opens nothing until asked', async () => {
      pool = createPool({ databaseUrl: database.url, maxConnections: 4 });
      await poolWarmed(pool);
      expect(await sessionsOf(admin, database.name)).to.deep.equal([]);
    });
  });

  describe('a server with kept connections', () => {
    let server: TestServer;

    before(async () => {
      server = await startTestServer({ poolMin: 3 });
    });
    after(() => server.close());

    it('serves requests on the connections it opened at start', async () => {
      // Three for the main pool, one for status reads.
      const atStart = await sessionsOf(admin, server.database.name);
      expect(atStart).to.have.length(4);

      await sendRequest(
        server.port,
        '<create><account id="1" balance="1000"/><account id="2" balance="0"/><symbol sym="X"><account id="2">50</account></symbol></create>',
      );
      // One at a time: a burst of concurrent requests may still need more than the kept ones.
      for (let n = 0; n < 4; n++) {
        const buy = `<transactions id="1"><order sym="X" amount="2" limit="${10 + n}"/></transactions>`;
        const sell = `<transactions id="2"><order sym="X" amount="-1" limit="${9 + n}"/></transactions>`;
        expect(await sendRequest(server.port, buy)).to.contain('<opened');
        expect(await sendRequest(server.port, sell)).to.contain('<opened');
      }
      await sendRequest(server.port, '<transactions id="1"><query id="1"/><query id="2"/></transactions>');

      const after = await sessionsOf(admin, server.database.name);
      expect(
        after.filter((pid) => !atStart.includes(pid)),
        'no session opened for the requests',
      ).to.deep.equal([]);
    });
  });
});
