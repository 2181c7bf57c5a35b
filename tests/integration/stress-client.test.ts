/** The stress client, run for a few seconds against a real server process (CI smoke). */
import { expect } from 'chai';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startServerProcess } from '../support/process.js';
import { runStress, type StressSummary } from '../support/stress.js';
import { codeOfMessage } from '../../server/errors.js';

describe('stress client (smoke)', function () {
  this.timeout(120_000);
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => database.drop());

  for (const framing of ['length', 'bare'] as const) {
    it(`${framing} framing: a 3 s run sends orders, queries and cancels and the SQL invariant check passes`, async () => {
      const server = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: framing });
      try {
        const result = await runStress([
          '--port',
          String(server.port),
          '--framing',
          framing,
          '--seconds',
          '3',
          '--warmup',
          '0.5',
          '--connections',
          '6',
          '--accounts',
          '20',
          '--symbols',
          '3',
          '--seed',
          '7',
          '--database-url',
          database.url,
          '--json',
        ]);
        expect(result.code, result.stderr).to.equal(0);
        const summary = JSON.parse(result.stdout) as StressSummary;
        expect(summary.requests).to.be.greaterThan(50);
        expect(summary.orders).to.be.greaterThan(20);
        expect(summary.failedRequests).to.equal(0);
        expect(summary.latencyMs.p99).to.be.greaterThan(0);
        expect(summary.invariants).to.deep.equal({ checked: 'sql', violations: [] });
        // Percentiles per kind, whose counts make up the whole; rejections apart from failures.
        const kinds = ['order', 'query', 'cancel'] as const;
        expect(kinds.reduce((sum, kind) => sum + (summary.latencyMsByKind[kind].count ?? 0), 0)).to.equal(
          summary.requests,
        );
        for (const kind of kinds) expect(summary.latencyMsByKind[kind].p99, kind).to.be.greaterThan(0);
        expect(summary.errors).to.deep.equal({});
        for (const reason of Object.keys(summary.rejections)) {
          expect(codeOfMessage(reason), reason).to.be.oneOf([
            'insufficient_funds',
            'insufficient_shares',
            'nothing_open',
          ]);
        }
        // The measured window is marked on stderr, start before end (the benchmarks sample CPU by it).
        const markers = result.stderr.split('\n').filter((line) => line.startsWith('{"phase"'));
        expect(markers).to.deep.equal(['{"phase":"measuring"}', '{"phase":"measured"}']);
      } finally {
        await server.stop();
      }
    });
  }

  it('two worker processes sharing the port (WORKERS=2): the SQL invariant check passes', async () => {
    const server = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: 'length', WORKERS: '2' });
    try {
      const result = await runStress([
        '--port',
        String(server.port),
        '--seconds',
        '3',
        '--warmup',
        '0.5',
        '--connections',
        '8',
        '--accounts',
        '20',
        '--symbols',
        '2',
        '--seed',
        '11',
        '--database-url',
        database.url,
        '--json',
      ]);
      expect(result.code, result.stderr).to.equal(0);
      const summary = JSON.parse(result.stdout) as StressSummary;
      expect(summary.failedRequests).to.equal(0);
      expect(summary.invariants).to.deep.equal({ checked: 'sql', violations: [] });
      expect(server.log().match(/"msg":"exchange server listening"/g)).to.have.length(2);
    } finally {
      expect(await server.stop()).to.equal(0);
    }
  });

  it('without database access it verifies through the protocol', async () => {
    const server = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: 'length' });
    try {
      const result = await runStress([
        '--port',
        String(server.port),
        '--seconds',
        '2',
        '--warmup',
        '0',
        '--accounts',
        '10',
        '--symbols',
        '2',
        '--json',
      ]);
      expect(result.code, result.stderr).to.equal(0);
      expect((JSON.parse(result.stdout) as StressSummary).invariants).to.deep.equal({
        checked: 'protocol',
        violations: [],
      });
    } finally {
      await server.stop();
    }
  });

  it('--csv prints a header and one row for all requests and one per kind', async () => {
    const server = await startServerProcess({ DATABASE_URL: database.url });
    try {
      const result = await runStress(
        [
          '--port',
          String(server.port),
          '--seconds',
          '1',
          '--warmup',
          '0',
          '--connections',
          '2',
          '--accounts',
          '6',
          '--symbols',
          '1',
          '--csv',
        ],
        { timeoutMs: 60_000 },
      );
      expect(result.code, result.stderr).to.equal(0);
      const rows = result.stdout
        .trim()
        .split('\n')
        .map((line) => line.split(','));
      expect(rows[0]).to.deep.equal([
        'kind',
        'requests',
        'requests_per_s',
        'p50_ms',
        'p90_ms',
        'p99_ms',
        'p999_ms',
        'max_ms',
        'mean_ms',
      ]);
      expect(rows.slice(1).map((row) => row[0])).to.deep.equal(['all', 'order', 'query', 'cancel']);
      for (const row of rows.slice(1))
        for (const field of row.slice(1)) expect(Number.isFinite(Number(field)), `${row.join(',')}`).to.equal(true);
      expect(Number(rows[1]?.[1])).to.equal(Number(rows[2]?.[1]) + Number(rows[3]?.[1]) + Number(rows[4]?.[1]));
      expect(result.stderr, 'no progress lines mixed into CSV runs').to.equal('');
    } finally {
      await server.stop();
    }
  });

  it('exits 1 with a clear message when the server cannot be reached, and 2 on bad usage', async () => {
    const unreachable = await runStress(['--port', '1', '--seconds', '1'], { timeoutMs: 30_000 });
    expect(unreachable.code).to.equal(1);
    expect(unreachable.stderr).to.match(
      /setup failed: cannot connect to 127\.0\.0\.1:1: connection refused .*is the server running\?/,
    );
    const usage = await runStress(['--mix', 'nonsense']);
    expect(usage.code).to.equal(2);
    // One line naming the problem (and where to look), not the whole help.
    expect(usage.stderr.trim().split('\n')).to.have.length(2);
    expect(usage.stderr).to.match(/--mix/);
    expect(usage.stderr).to.not.contain('Usage:');
  });

  for (const framing of ['length', 'bare'] as const) {
    it(`${framing} framing: a server killed mid-run is given up for gone after backing off; refusals are not failed requests`, async () => {
      const server = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: framing });
      const running = runStress(
        [
          '--port',
          String(server.port),
          '--seconds',
          '60',
          '--warmup',
          '0',
          '--connections',
          '4',
          '--accounts',
          '10',
          '--symbols',
          '2',
          '--database-url',
          database.url,
          '--json',
        ],
        { timeoutMs: 50_000 },
      );
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      server.child.kill('SIGKILL');
      const killedAt = Date.now();
      const result = await running;
      expect(result.timedOut, result.stderr).to.equal(false);
      expect(result.code, result.stderr).to.equal(1);
      // It backs off for about 5 s, then stops: far from the 60 s asked for.
      expect(Date.now() - killedAt, 'stopped soon after the server went away').to.be.below(25_000);
      // The whole tail in the message: chai cuts the value it shows, and the line it did print instead is the clue.
      expect(result.stderr, `stderr ends: ${result.stderr.slice(-1500)}`).to.match(
        /connection refused .*is the server running\?/,
      );
      const summary = JSON.parse(result.stdout) as StressSummary & { serverGone: string | null };
      expect(summary.serverGone).to.match(/connection refused/);
      expect(summary.requests).to.be.greaterThan(0);
      // A handful: those in flight when it died, or connected into its backlog as it died (their
      // outcome is unknown), a few per connection; never one per refusal (thousands, before).
      expect(summary.failedRequests, JSON.stringify(summary.errors)).to.be.at.most(12);
      expect(JSON.stringify(summary.errors)).to.not.match(/refused/);
      // The database outlived the server: what was acknowledged is consistent.
      expect(summary.invariants).to.deep.equal({ checked: 'sql', violations: [] });
      await server.stop();
    });
  }
});
