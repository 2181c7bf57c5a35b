/**
 * Memory per client is bounded: requests read but not yet answered (and replies not yet
 * sent) are held up to a limit per connection (one maximum-size request's worth) and per
 * process (MAX_BUFFERED_BYTES); beyond it the server stops reading, and the clients wait.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { LengthClient, sendOnce } from '../support/client.js';
import { createTestDatabase } from '../support/database.js';
import { startServerProcess } from '../support/process.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults } from '../support/xml.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A request of about `size` bytes whose reply is as large: two queries of ids that cannot exist, echoed back. */
function echoingRequest(account: string, size: number): Buffer {
  const id = 'x'.repeat(Math.floor((size - 64) / 2) - 20);
  const body = Buffer.from(`<transactions id="${account}"><query id="${id}"/><query id="${id}"/></transactions>`);
  return Buffer.concat([Buffer.from(`${body.length}\n`), body]);
}

/** Opens a connection that sends `frames` and never reads (its receive side stays paused). */
function nonReader(port: number, frames: Buffer[]): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.pause();
      for (const frame of frames) socket.write(frame);
      resolve(socket);
    });
    // Before connecting, a failure; after, the server cutting a client that reads nothing.
    socket.on('error', reject);
  });
}

/** Flushed, or closed by the server (a client that reads nothing may be cut). */
function settled(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.writableLength === 0 || socket.destroyed) resolve();
    socket.once('drain', () => resolve());
    socket.once('close', () => resolve());
  });
}

/** Server RSS test: `clients` non-readers each pipeline `frames`; a normal request must still be answered. */
async function peakRssUnderFlood(clients: number, frames: Buffer[]): Promise<{ before: number; peak: number }> {
  const database = await createTestDatabase();
  // Clients that read nothing are cut after IDLE_TIMEOUT_MS (sooner while others wait for
  // memory); 5 s here, so that every client is served or cut within the test.
  const server = await startServerProcess({
    DATABASE_URL: database.url,
    REPLY_FRAMING: 'length',
    MAX_CONNECTIONS: '5000',
    IDLE_TIMEOUT_MS: '5000',
  });
  const sockets: net.Socket[] = [];
  try {
    const pid = server.child.pid as number;
    await sendOnce(server.port, '<create><account id="81" balance="5"/></create>');
    const before = statusField(pid, 'VmRSS');
    for (let start = 0; start < clients; start += 100) {
      sockets.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(100, clients - start) }, () => nonReader(server.port, frames)),
        )),
      );
    }
    const client = await LengthClient.connect(server.port);
    try {
      const reply = await within(
        client.send('<transactions id="81"><query id="1"/></transactions>'),
        120_000,
        'another client during the flood',
      );
      expect(parseResults(reply)[0]?.name).to.equal('error');
    } finally {
      client.close();
    }
    await within(Promise.all(sockets.map(settled)), 180_000, 'every client read from or cut');
    const peak = statusField(pid, 'VmHWM');
    const sent = frames.reduce((sum, frame) => sum + frame.length, 0) * clients;
    console.log(
      `      server RSS: ${(before / MiB).toFixed(0)} MiB before, peak ${(peak / MiB).toFixed(0)} MiB; ${clients} clients sent ${(sent / MiB).toFixed(0)} MiB`,
    );
    return { before, peak };
  } finally {
    for (const socket of sockets) socket.destroy();
    await server.stop();
    await database.drop();
  }
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function statusField(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no ${field} for ${pid}`);
  return Number(match[1]) * KiB;
}

describe('memory per client is bounded', function () {
  this.timeout(240_000);

  /** Waits until the budget's peak has not moved for `quietMs` (the flood has done what it can). */
  async function peakSettles(server: TestServer, quietMs: number, capMs: number): Promise<number> {
    const started = Date.now();
    let peak = -1;
    let since = Date.now();
    while (Date.now() - since < quietMs && Date.now() - started < capMs) {
      if (server.listener.budget.peakBytes !== peak) {
        peak = server.listener.budget.peakBytes;
        since = Date.now();
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return peak;
  }

  it('one client pipelining large requests and reading none of their large replies holds about one maximum request, then gets every reply', async () => {
    const server = await startTestServer({ framing: 'length', maxRequestBytes: MiB });
    try {
      // 16 MiB of replies: more than the kernel's socket buffers take, so the connection stalls.
      const frame = echoingRequest('91', MiB);
      await sendOnce(server.port, '<create><account id="91" balance="5"/></create>');
      const socket = await nonReader(
        server.port,
        Array.from({ length: 16 }, () => frame),
      );
      const peak = await peakSettles(server, 1_500, 20_000);
      console.log(`      held at most ${(peak / KiB).toFixed(0)} KiB for the client`);
      // Requests: at most MAX_REQUEST_BYTES; replies: the one being sent (measured: 2 MiB in all;
      // without the bound, all 16 MiB of requests were held). A chunk of the next request may
      // ride on the end of one.
      expect(peak, 'held for this client at most').to.be.at.most(MiB + frame.length + 128 * KiB);
      // Reading again, it gets every reply, in order.
      const replies: Buffer[] = [];
      let pending = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        for (let newline = pending.indexOf(0x0a); newline >= 0; newline = pending.indexOf(0x0a)) {
          const length = Number(pending.subarray(0, newline).toString('ascii'));
          if (pending.length < newline + 1 + length) break;
          replies.push(pending.subarray(newline + 1, newline + 1 + length));
          pending = pending.subarray(newline + 1 + length);
        }
      });
      socket.resume();
      await within(
        (async () => {
          while (replies.length < 16) await new Promise((resolve) => setTimeout(resolve, 20));
        })(),
        30_000,
        'all 16 replies',
      );
      for (const reply of replies)
        expect(parseResults(reply.toString('utf8')).map((node) => node.name)).to.deep.equal(['error', 'error']);
      socket.destroy();
    } finally {
      await server.close();
    }
  });

  it('many clients together hold at most the process budget (plus a read chunk each), and another client is still served', async () => {
    const budget = 4 * MiB;
    const server = await startTestServer({ framing: 'length', maxRequestBytes: MiB, maxBufferedBytes: budget });
    const sockets: net.Socket[] = [];
    try {
      await sendOnce(server.port, '<create><account id="71" balance="5"/></create>');
      const frame = echoingRequest('71', MiB);
      for (let index = 0; index < 40; index++)
        sockets.push(
          await nonReader(
            server.port,
            Array.from({ length: 4 }, () => frame),
          ),
        );
      const client = await LengthClient.connect(server.port);
      try {
        const reply = await within(
          client.send('<transactions id="71"><query id="1"/></transactions>'),
          60_000,
          'another client',
        );
        expect(parseResults(reply)[0]?.name).to.equal('error');
      } finally {
        client.close();
      }
      // Clients that read nothing while others wait for room are cut; the rest are read in full.
      await within(Promise.all(sockets.map(settled)), 120_000, 'every client read from or cut');
      console.log(`      held at most ${(server.listener.budget.peakBytes / KiB).toFixed(0)} KiB for all clients`);
      expect(server.listener.budget.peakBytes, 'held at once').to.be.at.most(budget + 40 * 64 * KiB + 2 * MiB);
    } finally {
      for (const socket of sockets) socket.destroy();
      await server.close();
    }
  });

  // The bound README states for the defaults (MAX_BUFFERED_BYTES 64 MiB): 512 MiB. Measured:
  // about 140 MiB and 320 MiB at peak; without the bounds, 1.6 GiB for the second flood.
  const RSS_BOUND = 512 * MiB;

  it('1,000 clients pipelining large requests and never reading their large replies keep the server process under 512 MiB', async () => {
    // Three requests of 256 KiB per client, each answered by a reply as large: 750 MiB sent.
    const frame = echoingRequest('81', 256 * KiB);
    const { peak } = await peakRssUnderFlood(1_000, [frame, frame, frame]);
    expect(peak, 'peak RSS of the server process').to.be.below(RSS_BOUND);
  });

  it('100 clients pipelining 16 requests of 1 MiB each and never reading keep the server process under 512 MiB', async () => {
    // The reported flood, larger: 1,600 MiB sent (12 such clients once took the server to 1 GiB).
    const frame = echoingRequest('81', MiB);
    const { peak } = await peakRssUnderFlood(
      100,
      Array.from({ length: 16 }, () => frame),
    );
    expect(peak, 'peak RSS of the server process').to.be.below(RSS_BOUND);
  });
});
