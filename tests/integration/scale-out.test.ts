/**
 * Scale-out: several server processes, each on its own port, behind a real TCP
 * load balancer (HAProxy, mode tcp, roundrobin), all on one PostgreSQL database
 * and the shared Redis. The stress client drives the balancer; the SPEC
 * invariants are checked in SQL, and HAProxy's per-backend session counts and
 * each server's own shutdown counters show that every backend did real work.
 * Pending, its title saying how to install haproxy, only where haproxy cannot run
 * (a failure instead with REQUIRE_ALL_TESTS=1, as in CI).
 */
import { expect } from 'chai';
import { openChannel } from '../../client/wire.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { HAPROXY, startBalancer, type Balancer, type BackendStat } from '../support/haproxy.js';
import { startServerProcess, type ServerProcess } from '../support/process.js';
import { SHARED_REDIS_URL } from '../support/redis.js';
import { skipUnless, titleNeeding } from '../support/requirements.js';
import { runStress, type StressSummary } from '../support/stress.js';

const SERVERS = 3;

type StoppedLine = {
  msg: string;
  serializationRetries: number;
  retriesExhausted: number;
  cache: { hits: number; misses: number; errors: number } | 'off';
};

/** The server's last log line, written after it stopped: retry and cache counters of its whole life. */
function stoppedLine(server: ServerProcess): StoppedLine {
  const line = server
    .log()
    .split('\n')
    .reverse()
    .find((text) => text.includes('"msg":"stopped"'));
  if (!line) throw new Error(`server on port ${server.port} logged no "stopped" line:\n${server.log()}`);
  return JSON.parse(line) as StoppedLine;
}

function sessionsOf(rows: BackendStat[]): Record<string, number> {
  return Object.fromEntries(rows.map((row) => [row.name, row.sessions]));
}

describe(
  titleNeeding(
    `scale-out: ${SERVERS} server processes behind HAProxy (tcp, roundrobin) on one database and one Redis`,
    HAPROXY,
  ),
  function () {
    this.timeout(120_000);
    let database: TestDatabase | null = null;
    /** What the running test started; afterEach stops it whether the test passed or not. */
    let servers: ServerProcess[] = [];
    let balancer: Balancer | null = null;

    before(async function () {
      skipUnless(this, HAPROXY);
      database = await createTestDatabase();
    });

    afterEach(async () => {
      const stopping = balancer;
      balancer = null;
      const running = servers;
      servers = [];
      await Promise.allSettled([stopping?.stop(), ...running.map((server) => server.stop())]);
    });

    after(async () => {
      await database?.drop();
    });

    /** Starts the servers one by one (so their schema check does not race), then the balancer in front. */
    async function startCluster(framing: 'length' | 'bare'): Promise<Balancer> {
      if (!database) throw new Error('no database');
      for (let index = 0; index < SERVERS; index++) {
        servers.push(
          await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: framing, REDIS_URL: SHARED_REDIS_URL }),
        );
      }
      expect(new Set(servers.map((server) => server.port)).size).to.equal(SERVERS);
      balancer = await startBalancer(servers.map((server) => server.port));
      await balancer.waitUntilAllUp();
      return balancer;
    }

    for (const framing of ['length', 'bare'] as const) {
      it(`${framing} framing: the stress client through the balancer keeps every invariant, and every server takes a share`, async () => {
        if (!database) throw new Error('no database');
        const front = await startCluster(framing);
        const result = await runStress([
          '--port',
          String(front.port),
          '--framing',
          framing,
          '--seconds',
          '4',
          '--connections',
          '12',
          '--accounts',
          '30',
          '--symbols',
          '3',
          '--seed',
          framing === 'length' ? '21' : '22',
          '--database-url',
          database.url,
          '--json',
        ]);
        expect(
          result.code,
          `stress exited ${result.code}:\n${result.stderr}\n${result.stdout}\nhaproxy:\n${front.output()}`,
        ).to.equal(0);
        const summary = JSON.parse(result.stdout) as StressSummary;
        expect(summary.failedRequests, JSON.stringify(summary.errors)).to.equal(0);
        expect(summary.invariants).to.deep.equal({ checked: 'sql', violations: [] });
        expect(summary.requests).to.be.greaterThan(50);
        expect(summary.orders).to.be.greaterThan(20);

        // The balancer's view: every backend received connections, about evenly (round robin).
        const stats = await front.stats();
        const sessions = sessionsOf(stats);
        const total = Object.values(sessions).reduce((sum, count) => sum + count, 0);
        // length: 1 set-up connection + 12 persistent ones; bare: one connection per request.
        expect(total, JSON.stringify(sessions)).to.be.at.least(framing === 'length' ? 13 : summary.requests);
        for (const row of stats) {
          expect(row.status, JSON.stringify(stats)).to.equal('UP');
          expect(
            row.sessions,
            `${row.name} got ${row.sessions} of ${total} sessions: ${JSON.stringify(sessions)}`,
          ).to.be.at.least(Math.floor(total / SERVERS / 2));
        }

        // The servers' view: each one answered requests (every <transactions> checks its account through the
        // cache) and exits cleanly, and the shared Redis served hits. A slow cache call (over CACHE_TIMEOUT_MS on
        // a loaded machine) counts as an error and a miss, by design, so errors are not asserted.
        const codes = await Promise.all(servers.map((server) => server.stop()));
        expect(codes).to.deep.equal(servers.map(() => 0));
        let hits = 0;
        for (const server of servers) {
          const stopped = stoppedLine(server);
          expect(stopped.cache, server.log()).to.not.equal('off');
          if (stopped.cache === 'off') continue;
          expect(
            stopped.cache.hits + stopped.cache.misses,
            `server on port ${server.port} saw no reads`,
          ).to.be.greaterThan(0);
          expect(stopped.retriesExhausted).to.equal(0);
          hits += stopped.cache.hits;
        }
        expect(hits, 'cache hits over all servers').to.be.greaterThan(0);
      });
    }

    it('a backend that stops is marked DOWN by the health check and the others take every new connection', async () => {
      const front = await startCluster('length');
      const [first] = servers;
      if (!first) throw new Error('no server');
      expect(await first.stop()).to.equal(0);
      await front.waitUntilDown('s1');
      const before = sessionsOf(await front.stats());

      // A new connection per request, through the balancer: each must land on a live server and succeed.
      const account = `9${Date.now() % 1e9}`;
      for (let index = 0; index < 12; index++) {
        const channel = await openChannel('length', '127.0.0.1', front.port);
        try {
          const reply = await channel.send(
            index === 0
              ? `<create><account id="${account}" balance="100"/></create>`
              : `<transactions id="${account}"><query id="1"/></transactions>`,
          );
          expect(reply, `request ${index}: ${reply}`).to.match(index === 0 ? /<created id=/ : /<(status|error) id="1"/);
        } finally {
          channel.close();
        }
      }
      const after = sessionsOf(await front.stats());
      expect(after.s1, 'the stopped server got no new sessions').to.equal(before.s1);
      expect((after.s2 ?? 0) - (before.s2 ?? 0)).to.be.at.least(1);
      expect((after.s3 ?? 0) - (before.s3 ?? 0)).to.be.at.least(1);
    });
  },
);
