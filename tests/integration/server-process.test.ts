/** The server as users run it: a process with configuration, signals and a clean shutdown. */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { LengthClient } from '../support/client.js';
import pg from 'pg';
import { ADMIN_DATABASE_URL, createTestDatabase, type TestDatabase } from '../support/database.js';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import {
  freePort,
  PROJECT_ROOT,
  runServer,
  SERVER_ENTRY,
  spawnServer,
  startServerProcess,
} from '../support/process.js';
import { SHARED_REDIS_URL } from '../support/redis.js';
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
    for (const name of [
      'PORT',
      'DATABASE_URL',
      'REDIS_URL',
      'REPLY_FRAMING',
      'MAX_REQUEST_BYTES',
      'REQUEST_TIMEOUT_MS',
    ]) {
      expect(result.stdout).to.contain(name);
    }
  });

  it('a bad setting stops the start with a message naming it, exit status 2', () => {
    const result = spawnSync(process.execPath, [SERVER_ENTRY], {
      encoding: 'utf8',
      env: { ...process.env, REPLY_FRAMING: 'xml' },
    });
    expect(result.status).to.equal(2);
    expect(result.stderr).to.contain('REPLY_FRAMING');
    const flag = spawnSync(process.execPath, [SERVER_ENTRY, '--no-such-flag'], { encoding: 'utf8' });
    expect(flag.status).to.equal(2);
    const level = spawnSync(process.execPath, [SERVER_ENTRY], {
      encoding: 'utf8',
      env: { ...process.env, LOG_LEVEL: 'verbose' },
    });
    expect(level.status).to.equal(2);
    expect(level.stderr).to.contain('LOG_LEVEL="verbose"');
  });

  it('SIGTERM answers the request in flight, closes persistent connections and exits 0', async () => {
    const server = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: 'length' });
    const client = await LengthClient.connect(server.port);
    const idle = await LengthClient.connect(server.port);
    // A request that takes a while (2,000 transactions), signalled once its first account is
    // stored, so it is surely being processed. (A fixed 150 ms wait raced the server's reading
    // of the request on a busy machine: a shutdown takes no request it has not received.)
    const accounts = Array.from({ length: 2000 }, (_, index) => `<account id="${index + 1}" balance="10"/>`).join('');
    const inFlight = client.send(`<create>${accounts}</create>`);
    const pool = new pg.Pool({ connectionString: database.url, max: 1 });
    try {
      for (let attempt = 0; ; attempt++) {
        if ((await pool.query(`SELECT 1 FROM accounts WHERE id = '1'`)).rowCount === 1) break;
        if (attempt >= 500) throw new Error('the 2,000-account create did not begin within 10 s');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await pool.end();
    }
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
      {
        DATABASE_URL: database.url,
        REPLY_FRAMING: 'length',
        WORKERS: '2',
        METRICS_PORT: String(metricsPort),
        REDIS_URL: 'redis://127.0.0.1:6379',
      },
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
        if (!/exchange_requests_total\{root="create"\} [1-9]/.test(body))
          await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(body).to.match(/exchange_requests_total\{root="create"\} 1/);
      expect(body).to.contain('exchange_open_connections');
      expect((await fetch(`http://127.0.0.1:${metricsPort}/nope`)).status).to.equal(404);
    } finally {
      expect(await server.stop()).to.equal(0);
    }
  });

  // The primary stops as soon as the first worker listens; the second may still be starting.
  // Such a worker was seen to miss the SIGTERM now and then (one start in about six), and the
  // primary then waited for it forever.
  it('WORKERS=2, SIGTERM right after start (a worker still starting): the server exits 0, every time', async function () {
    // Twelve starts and stops: 3-6 s each when other jobs load the machine.
    this.timeout(240_000);
    for (let round = 0; round < 12; round++) {
      const server = await startServerProcess({ DATABASE_URL: database.url, REPLY_FRAMING: 'length', WORKERS: '2' });
      const code = await Promise.race([
        server.stop(),
        new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 20_000)),
      ]);
      if (code === 'still running') server.child.kill('SIGKILL');
      expect(code, `round ${round}: ${server.log().slice(-1500)}`).to.equal(0);
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
      await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [database.name],
      );
      await admin.end().catch(() => undefined);
      try {
        const health = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
        expect(health.status).to.equal(503);
        expect(await health.json()).to.deep.equal({ server: 'listening', postgres: 'unreachable', redis: 'off' });
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

  for (const workers of ['1', '2'] as const) {
    it(`WORKERS=${workers}: a port already in use stops the start with the reason and exit 1 (no restarts)`, async () => {
      const blocker = net.createServer();
      const port = await new Promise<number>((resolve) =>
        blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as net.AddressInfo).port)),
      );
      try {
        const result = await runServer(
          { DATABASE_URL: database.url, PORT: String(port), HOST: '127.0.0.1', WORKERS: workers, LOG_LEVEL: 'info' },
          30_000,
        );
        expect(result.timedOut, result.stderr).to.equal(false);
        expect(result.code, result.stderr).to.equal(1);
        expect(result.stderr).to.match(
          new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the port is already in use`),
        );
        expect(result.stderr).to.not.contain('starting a replacement');
      } finally {
        blocker.close();
      }
    });
  }

  it('WORKERS=2 with Redis: /healthz is 503 until a worker listens, then 200 reporting Redis; process_max_fds is not summed', async () => {
    const metricsPort = await freePort();
    const server = await startServerProcess(
      {
        DATABASE_URL: database.url,
        WORKERS: '2',
        METRICS_PORT: String(metricsPort),
        REDIS_URL: SHARED_REDIS_URL,
        // Each worker is held up 2 s before it starts: the window before any listens.
        NODE_OPTIONS: `--require ${path.join(PROJECT_ROOT, 'tests/fixtures/slow-worker-start.cjs')}`,
      },
      undefined,
      { waitForListening: false },
    );
    try {
      type Health = { server: string; workers: { listening: number; wanted: number }; postgres: string; redis: string };
      const seen: Array<{ status: number; body: Health }> = [];
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && !(seen.at(-1)?.status === 200 && seen.at(-1)?.body.workers.listening === 2)) {
        const response = await fetch(`http://127.0.0.1:${metricsPort}/healthz`).catch(() => null);
        if (response) seen.push({ status: response.status, body: (await response.json()) as Health });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const starting = seen.filter((entry) => entry.body.server === 'starting');
      expect(starting.length, 'observed the server before any worker listened').to.be.greaterThan(0);
      for (const entry of seen) {
        expect(entry.status, JSON.stringify(entry)).to.equal(entry.body.server === 'listening' ? 200 : 503);
        expect(entry.body.server === 'listening', JSON.stringify(entry)).to.equal(entry.body.workers.listening > 0);
      }
      const last = seen.at(-1);
      expect(last?.status).to.equal(200);
      expect(last?.body).to.deep.equal({
        server: 'listening',
        workers: { listening: 2, wanted: 2 },
        postgres: 'ok',
        redis: 'ok',
      });
      expect(server.log().match(/"msg":"ready: listening on /g), 'one ready line').to.have.length(1);

      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const maxFds = Number(/^process_max_fds (\d+)$/m.exec(metrics)?.[1]);
      const limit = Number(
        /^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${server.child.pid}/limits`, 'utf8'))?.[1],
      );
      expect(maxFds, 'the limit of one process, not the sum over workers').to.equal(limit);
      expect(server.log(), 'no log line names pid twice').to.not.match(/"pid":\d+[^\n]*"pid":/);
    } finally {
      expect(await server.stop()).to.equal(0);
    }
  });

  it("WORKERS=2: /metrics has the write batch sizes and the WAL flushes once, from the primary's shared lane, counting every order", async () => {
    const metricsPort = await freePort();
    // after-lock: every batch commits without its flush, so every reply waits for one in the primary.
    const server = await spawnServer(
      {
        DATABASE_URL: database.url,
        REPLY_FRAMING: 'length',
        WORKERS: '2',
        METRICS_PORT: String(metricsPort),
        WRITE_FLUSH: 'after-lock',
      },
      { listeners: 2 },
    );
    const clients: LengthClient[] = [];
    try {
      for (let index = 0; index < 6; index++) clients.push(await LengthClient.connect(server.port));
      expect(await clients[0]?.send('<create><account id="987654" balance="1000"/></create>')).to.contain('<created');
      const replies = await Promise.all(
        clients.map((client, index) =>
          client.send(`<transactions id="987654"><order sym="M" amount="1" limit="${index + 1}"/></transactions>`),
        ),
      );
      for (const reply of replies) expect(reply).to.contain('<opened');
      // Status reads in both workers (they wait for durability on the primary's barrier).
      const statuses = await Promise.all(
        clients.map((client, index) => {
          const id = /<opened [^>]*id="(\d+)"/.exec(replies[index] ?? '')?.[1];
          return client.send(`<transactions id="987654"><query id="${id}"/></transactions>`);
        }),
      );
      for (const status of statuses) expect(status).to.match(/<status id="\d+">\s*<open shares="1"\/>\s*<\/status>/);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics.match(/^# TYPE exchange_write_batch_size histogram$/gm), 'one family').to.have.length(1);
      expect(Number(/^exchange_write_batch_size_sum (\d+)$/m.exec(metrics)?.[1]), 'every order').to.equal(6);
      expect(metrics.match(/^# TYPE exchange_wal_flushes_total counter$/gm), 'one flush family').to.have.length(1);
      expect(Number(/^exchange_wal_flushes_total (\d+)$/m.exec(metrics)?.[1]), 'flushes made').to.be.at.least(1);
      expect(
        metrics.match(/^# TYPE exchange_write_lane_busy_seconds_total counter$/gm),
        'one lane family',
      ).to.have.length(1);
      expect(Number(/^exchange_write_lane_busy_seconds_total (\S+)$/m.exec(metrics)?.[1]), 'lane time').to.be.above(0);
      // Still one valid exposition: comments, samples and blank lines only.
      for (const line of metrics.split('\n')) expect(line).to.match(/^(#.*|[a-zA-Z_:][\w:]*(\{.*\})? \S+|)$/);
    } finally {
      for (const client of clients) client.close();
      expect(await server.stop()).to.equal(0);
    }
    // Every process's "stopped" line (what the benchmark reads): the primary's lane ran every order.
    const lanes = server
      .log()
      .split('\n')
      .filter((line) => line.includes('"msg":"stopped"'))
      .map(
        (line) =>
          (JSON.parse(line) as { writeLane?: { busySeconds: number; batches: number; writes: number } }).writeLane,
      );
    expect(lanes, 'the primary and both workers').to.have.length(3);
    expect(
      lanes.reduce((sum, lane) => sum + (lane?.writes ?? 0), 0),
      'writes, summed',
    ).to.equal(6);
    expect(
      lanes.filter((lane) => (lane?.writes ?? 0) > 0),
      'one lane ran them',
    ).to.have.length(1);
    expect(lanes.reduce((sum, lane) => sum + (lane?.busySeconds ?? 0), 0)).to.be.above(0);
  });

  it('LOG_FORMAT=pretty (what a terminal gets): one readable line per event, not JSON', async () => {
    const server = await startServerProcess({ DATABASE_URL: database.url, LOG_FORMAT: 'pretty' }, undefined, {
      waitForListening: false,
    });
    try {
      for (let attempt = 0; attempt < 200 && !server.log().includes('ready: listening on'); attempt++)
        await new Promise((resolve) => setTimeout(resolve, 50));
      const lines = server.log().trim().split('\n');
      expect(
        lines.some((line) =>
          line.includes(`ready: listening on 127.0.0.1:${server.port}, bare reply framing, 1 process`),
        ),
        server.log(),
      ).to.equal(true);
      for (const line of lines)
        expect(line, 'time, level, pid, message, fields on one line').to.match(
          /^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|WARN|ERROR|DEBUG) \(\d+\): \S/,
        );
    } finally {
      expect(await server.stop()).to.equal(0);
    }
  });
});
