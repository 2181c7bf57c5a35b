/** The stress client, run for a few seconds against a real server process (CI smoke). */
import { expect } from 'chai';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startServerProcess } from '../support/process.js';
import { runStress, type StressSummary } from '../support/stress.js';

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
          '--port', String(server.port), '--framing', framing, '--seconds', '3', '--warmup', '0.5',
          '--connections', '6', '--accounts', '20', '--symbols', '3', '--seed', '7', '--database-url', database.url, '--json',
        ]);
        expect(result.code, result.stderr).to.equal(0);
        const summary = JSON.parse(result.stdout) as StressSummary;
        expect(summary.requests).to.be.greaterThan(50);
        expect(summary.orders).to.be.greaterThan(20);
        expect(summary.failedRequests).to.equal(0);
        expect(summary.latencyMs['p99']).to.be.greaterThan(0);
        expect(summary.invariants).to.deep.equal({ checked: 'sql', violations: [] });
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
        '--port', String(server.port), '--seconds', '3', '--warmup', '0.5', '--connections', '8',
        '--accounts', '20', '--symbols', '2', '--seed', '11', '--database-url', database.url, '--json',
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
      const result = await runStress(['--port', String(server.port), '--seconds', '2', '--warmup', '0', '--accounts', '10', '--symbols', '2', '--json']);
      expect(result.code, result.stderr).to.equal(0);
      expect((JSON.parse(result.stdout) as StressSummary).invariants).to.deep.equal({ checked: 'protocol', violations: [] });
    } finally {
      await server.stop();
    }
  });

  it('exits 1 with a clear message when the server cannot be reached, and 2 on bad usage', async () => {
    const unreachable = await runStress(['--port', '1', '--seconds', '1']);
    expect(unreachable.code).to.equal(1);
    expect(unreachable.stderr).to.match(/setup failed/);
    const usage = await runStress(['--mix', 'nonsense']);
    expect(usage.code).to.equal(2);
  });
});
