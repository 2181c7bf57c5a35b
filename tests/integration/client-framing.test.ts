/**
 * The clients as processes against real server processes in each reply framing: they detect
 * the server's framing by default, and a client told the wrong one stops at once and names
 * the right one (it once spun at 100% CPU forever, reading `<?xml` as a length).
 */
import { expect } from 'chai';
import net from 'node:net';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { PROJECT_ROOT, startServerProcess, type ServerProcess } from '../support/process.js';
import { runClient, runStress, type ClientRun, type StressSummary } from '../support/stress.js';

/** Generous: a client that hangs is killed here and the test fails; a working one takes well under it. */
const HANG_BOUND_MS = 20_000;
const EXAMPLES = path.join(PROJECT_ROOT, 'examples');

function show(run: ClientRun): string {
  return `exit ${run.code} after ${run.ms} ms${run.timedOut ? ' (KILLED: it hung)' : ''}\nstdout: ${run.stdout.slice(0, 600)}\nstderr: ${run.stderr.slice(0, 600)}`;
}

describe("clients and the server's reply framing (processes)", function () {
  this.timeout(120_000);
  let database: TestDatabase;
  let bare: ServerProcess;
  let framed: ServerProcess;

  before(async () => {
    database = await createTestDatabase();
    bare = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: 'bare' });
    framed = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: 'length' });
  });

  after(async () => {
    await bare?.stop();
    await framed?.stop();
    await database?.drop();
  });

  describe('exchange-client', () => {
    it('--framing length against a bare server exits 1 at once, saying the server speaks bare framing', async () => {
      const run = await runClient(
        ['--port', String(bare.port), '--framing', 'length', path.join(EXAMPLES, 'create.xml')],
        { timeoutMs: HANG_BOUND_MS },
      );
      expect(run.timedOut, show(run)).to.equal(false);
      expect(run.code, show(run)).to.equal(1);
      expect(run.stderr, show(run)).to.match(/server speaks bare reply framing/);
      expect(run.stderr, show(run)).to.match(/--framing bare/);
    });

    it('--framing bare against a length server exits 1 at once (it does not wait for the server to close)', async () => {
      const run = await runClient(
        ['--port', String(framed.port), '--framing', 'bare', path.join(EXAMPLES, 'create.xml')],
        { timeoutMs: HANG_BOUND_MS },
      );
      expect(run.timedOut, show(run)).to.equal(false);
      expect(run.code, show(run)).to.equal(1);
      expect(run.stderr, show(run)).to.match(/server speaks length reply framing/);
      // The server's idle timeout is 60 s: an answer well before it was not a wait for the close.
      expect(run.ms, show(run)).to.be.below(HANG_BOUND_MS);
    });

    for (const which of ['bare', 'length'] as const) {
      it(`without --framing it detects a ${which} server and sends every file in order`, async () => {
        const server = which === 'bare' ? bare : framed;
        const files = ['create.xml', 'transactions.xml'].map((name) => path.join(EXAMPLES, name));
        const run = await runClient(['--port', String(server.port), ...files], { timeoutMs: HANG_BOUND_MS });
        expect(run.code, show(run)).to.equal(0);
        expect(run.stdout.split('<?xml').length - 1, show(run)).to.equal(2);
        expect(run.stdout, show(run)).to.match(/<results>/);
      });
    }

    it('a server that is not there: a clear message and exit 1 after a short backoff', async () => {
      const closed = await closedPort();
      const run = await runClient(['--port', String(closed), path.join(EXAMPLES, 'create.xml')], {
        timeoutMs: HANG_BOUND_MS,
      });
      expect(run.code, show(run)).to.equal(1);
      expect(run.stderr, show(run)).to.match(
        /cannot connect to 127\.0\.0\.1:\d+: connection refused .*attempts.*is the server running\?/,
      );
      expect(run.stdout).to.equal('');
    });

    it('a bad flag is one short line and exit 2, not the whole help', async () => {
      for (const args of [['--framing', 'xml'], ['--port', 'abc'], ['--no-such-flag']]) {
        const run = await runClient(args, { timeoutMs: HANG_BOUND_MS });
        expect(run.code, show(run)).to.equal(2);
        expect(run.stderr.trim().split('\n'), show(run)).to.have.length.at.most(2);
        expect(run.stderr).to.not.contain('Usage:');
      }
    });
  });

  describe('exchange-stress', () => {
    const quick = [
      '--seconds',
      '1',
      '--warmup',
      '0',
      '--connections',
      '2',
      '--accounts',
      '4',
      '--symbols',
      '1',
      '--json',
    ];

    it('--framing length against a bare server exits 1 at once, saying the server speaks bare framing', async () => {
      const run = await runStress(['--port', String(bare.port), '--framing', 'length', ...quick], {
        timeoutMs: HANG_BOUND_MS,
      });
      expect(run.timedOut, show(run)).to.equal(false);
      expect(run.code, show(run)).to.equal(1);
      expect(run.stderr, show(run)).to.match(/server speaks bare reply framing/);
    });

    for (const which of ['bare', 'length'] as const) {
      it(`without --framing it detects a ${which} server, runs and verifies`, async () => {
        const server = which === 'bare' ? bare : framed;
        const run = await runStress(['--port', String(server.port), ...quick], { timeoutMs: 60_000 });
        expect(run.code, show(run)).to.equal(0);
        const summary = JSON.parse(run.stdout) as StressSummary;
        expect(summary.framing).to.equal(which);
        expect(summary.requests).to.be.greaterThan(0);
        expect(summary.failedRequests).to.equal(0);
        expect(summary.invariants.violations).to.deep.equal([]);
      });
    }
  });
});

/** A port with nothing listening on it (taken, then released). */
async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
