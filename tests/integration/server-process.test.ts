/** The server as users run it: a process with configuration, signals and a clean shutdown. */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { LengthClient } from '../support/client.js';
import pg from 'pg';
import { ADMIN_DATABASE_URL, createTestDatabase, type TestDatabase } from '../support/database.js';
import path from 'node:path';
import { freePort, PROJECT_ROOT, SERVER_ENTRY, startServerProcess } from '../support/process.js';
import { parseResults } from '../support/xml.js';

describe('server process', function () {
  this.timeout(60_000);
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => database.drop());

  it('--help lists every setting and exits 0', () => {
    const result = spawnSync(process.execPath, [SERVER_ENTRY, '--help'], { encoding: 'utf8' });
    expect(result.status).to.equal(0);
    for (const name of ['PORT', 'DATABASE_URL', 'REDIS_URL', 'REPLY_FRAMING', 'MAX_REQUEST_BYTES', 'REQUEST_TIMEOUT_MS']) {
      expect(result.stdout).to.contain(name);
    }
  });

  it('a bad setting stops the start with a message naming it, exit status 2', () => {
    const result = spawnSync(process.execPath, [SERVER_ENTRY], { encoding: 'utf8', env: { ...process.env, REPLY_FRAMING: 'xml' } });
    expect(result.status).to.equal(2);
    expect(result.stderr).to.contain('REPLY_FRAMING');
    const flag = spawnSync(process.execPath, [SERVER_ENTRY, '--no-such-flag'], { encoding: 'utf8' });
    expect(flag.status).to.equal(2);
  });

  it('SIGTERM answers the request in flight, closes persistent connections and exits 0', async () => {
    const server = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: 'length' });
    const client = await LengthClient.connect(server.port);
    const idle = await LengthClient.connect(server.port);
    // A request that takes a while (2,000 transactions), so it is surely being processed when the signal arrives.
    const accounts = Array.from({ length: 2000 }, (_, index) => `<account id="${index + 1}" balance="10"/>`).join('');
    const inFlight = client.send(`<create>${accounts}</create>`);
    await new Promise((resolve) => setTimeout(resolve, 150));
    server.child.kill('SIGTERM');
    const reply = parseResults(await inFlight);
    expect(reply.filter((node) => node.name === 'created')).to.have.length(2000);
    expect(await server.stop()).to.equal(0);
    expect(server.log(), server.log()).to.contain('"msg":"stopped"');
    idle.close();
  });

  it('the container entrypoint runs the server with the compose settings; /healthz and aggregated /metrics answer', async () => {
    const metricsPort = await freePort();
    const server = await startServerProcess(
      { DATABASE_URL: database.url, REPLY_FRAMING: 'length', WORKERS: '2', METRICS_PORT: String(metricsPort), REDIS_URL: 'redis://127.0.0.1:6379' },
      [path.join(PROJECT_ROOT, 'scripts/docker-entrypoint.sh')],
    );
    try {
      const client = await LengthClient.connect(server.port);
      await client.send('<create><account id="5001" balance="1"/></create>');
      client.close();
      const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      expect(health.status).to.equal(200);
      expect(((await health.json()) as { postgres: string }).postgres).to.equal('ok');
      // Workers answer the primary's metrics request once they are up; allow for start-up.
      let body = '';
      for (let attempt = 0; attempt < 20 && !/exchange_requests_total\{root="create"\} [1-9]/.test(body); attempt++) {
        const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
        body = response.ok ? await response.text() : '';
        if (!/exchange_requests_total\{root="create"\} [1-9]/.test(body)) await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(body).to.match(/exchange_requests_total\{root="create"\} 1/);
      expect(body).to.contain('exchange_open_connections');
      expect((await fetch(`http://127.0.0.1:${metricsPort}/nope`)).status).to.equal(404);
    } finally {
      expect(await server.stop()).to.equal(0);
    }
  });

  it('/healthz reports 503 when PostgreSQL is unreachable', async () => {
    const metricsPort = await freePort();
    const server = await startServerProcess({ DATABASE_URL: database.url, METRICS_PORT: String(metricsPort) });
    try {
      // Cut this server's database sessions off and forbid new ones for a moment.
      const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
      await admin.connect();
      await admin.query(`ALTER DATABASE ${database.name} ALLOW_CONNECTIONS false`);
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database.name]);
      await admin.end().catch(() => undefined);
      try {
        const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
        expect(health.status).to.equal(503);
        expect(await health.json()).to.deep.equal({ postgres: 'unreachable', redis: 'off' });
      } finally {
        const restorer = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
        await restorer.connect();
        await restorer.query(`ALTER DATABASE ${database.name} ALLOW_CONNECTIONS true`);
        await restorer.end();
      }
      const healthy = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
      expect(healthy.status).to.equal(200);
    } finally {
      await server.stop();
    }
  });
});
