/**
 * Idle clients cannot hold connection slots: a connection must make progress toward a request
 * within its deadline whatever it sends (blank lines are not progress), a connection is not kept
 * waiting for the peer to close after the server's last reply, and at the connection limit the
 * connections that have not sent a request give way to new ones.
 */
import { expect } from 'chai';
import net from 'node:net';
import { LengthClient, frameRequest, sendOnce } from '../support/client.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults } from '../support/xml.js';

/** A raw connection that records what it receives and when the server closed it. */
type Watched = { socket: net.Socket; received: () => string; closedAt: Promise<number> };

/** allowHalfOpen: the client does not close its side when the server closes its own (a peer that never closes). */
function watch(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<Watched> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: options.allowHalfOpen ?? false }, () =>
      resolve({ socket, received: () => Buffer.concat(chunks).toString('utf8'), closedAt }),
    );
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    // Our writes may fail once the server has closed; the close is what is tested.
    socket.on('error', () => undefined);
    socket.once('error', reject);
    const closedAt = new Promise<number>((done) => socket.once('close', () => done(Date.now())));
  });
}

/** Writes `bytes` every `everyMs` until the connection closes (or `forMs` passes). */
function keepSending(connection: Watched, bytes: string, everyMs: number, forMs: number): void {
  const timer = setInterval(() => {
    if (connection.socket.destroyed || connection.socket.writableEnded) clearInterval(timer);
    else connection.socket.write(bytes);
  }, everyMs);
  setTimeout(() => clearInterval(timer), forMs).unref();
  void connection.closedAt.then(() => clearInterval(timer));
}

/** ms until the server closed the connection, or null if it did not within `limitMs`. */
async function closedWithin(connection: Watched, since: number, limitMs: number): Promise<number | null> {
  const timeout = new Promise<null>((resolve) => setTimeout(() => resolve(null), limitMs).unref());
  const closed = await Promise.race([connection.closedAt, timeout]);
  if (closed === null) connection.socket.destroy();
  return closed === null ? null : closed - since;
}

/** ms until the server holds no connection, or null if it still does after `limitMs`. */
async function serverDropsAll(server: TestServer, since: number, limitMs: number): Promise<number | null> {
  while (server.listener.connectionCount > 0) {
    if (Date.now() - since > limitMs) return null;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - since;
}

describe('idle clients cannot hold slots', function () {
  this.timeout(60_000);
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => database.drop());

  describe('bare framing: the request deadline runs from connect, whatever arrives', () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ framing: 'bare', database, requestTimeoutMs: 1_000, idleTimeoutMs: 30_000 });
    });
    after(async () => server.close());

    for (const [name, bytes] of [
      ['a blank line', '\n'],
      ['CR LF', '\r\n'],
      ['a space', ' '],
      ['a tab', '\t'],
    ] as const) {
      it(`a client sending ${name} every 200 ms is answered with an error and closed at the deadline`, async () => {
        const started = Date.now();
        const connection = await watch(server.port);
        keepSending(connection, bytes, 200, 8_000);
        const closedAfter = await closedWithin(connection, started, 8_000);
        expect(closedAfter, 'closed by the server').to.not.equal(null);
        expect(closedAfter as number)
          .to.be.at.least(900)
          .and.below(5_000);
        expect(parseResults(connection.received())[0]?.text).to.match(/not received in full within 1000 ms/);
      });
    }

    it('a client trickling a length line after blank lines gets the same deadline, from connect', async () => {
      const started = Date.now();
      const connection = await watch(server.port);
      connection.socket.write('\n\n');
      setTimeout(() => connection.socket.write('1'), 600).unref();
      setTimeout(() => connection.socket.write('2'), 1_200).unref();
      const closedAfter = await closedWithin(connection, started, 8_000);
      expect(closedAfter as number)
        .to.be.at.least(900)
        .and.below(5_000);
      expect(parseResults(connection.received())[0]?.text).to.match(/not received in full/);
    });

    for (const [what, wire, expected] of [
      ['its reply', frameRequest('<create/>'), /<results\/>/],
      ['an error reply', Buffer.from('abc\n'), /invalid length line/],
    ] as const) {
      it(`after ${what}, a client that never closes its side is not waited for`, async () => {
        expect(await serverDropsAll(server, Date.now(), 5_000), 'no connection left from earlier tests').to.not.equal(
          null,
        );
        const connection = await watch(server.port, { allowHalfOpen: true });
        connection.socket.write(wire);
        const started = Date.now();
        const droppedAfter = await serverDropsAll(server, started, 8_000);
        try {
          expect(droppedAfter, 'closed by the server well before the idle timeout (30 s)').to.not.equal(null);
          expect(droppedAfter as number).to.be.below(5_000);
          expect(connection.received()).to.match(expected);
        } finally {
          connection.socket.destroy();
        }
      });
    }
  });

  describe('length framing: blank lines between requests are not progress', () => {
    let server: TestServer;
    before(async () => {
      server = await startTestServer({ framing: 'length', database, requestTimeoutMs: 1_000, idleTimeoutMs: 1_500 });
    });
    after(async () => server.close());

    it('a client sending only blank lines is closed as idle', async () => {
      const started = Date.now();
      const connection = await watch(server.port);
      keepSending(connection, '\r\n', 200, 10_000);
      const closedAfter = await closedWithin(connection, started, 10_000);
      expect(closedAfter, 'closed by the server').to.not.equal(null);
      expect(closedAfter as number)
        .to.be.at.least(1_400)
        .and.below(6_000);
    });

    it('a client sending blank lines after a request is closed as idle, the request answered', async () => {
      const connection = await watch(server.port);
      connection.socket.write(frameRequest('<create/>'));
      const started = Date.now();
      keepSending(connection, '\n', 200, 10_000);
      const closedAfter = await closedWithin(connection, started, 10_000);
      expect(closedAfter).to.not.equal(null);
      expect(closedAfter as number).to.be.below(6_000);
      expect(connection.received()).to.match(/^\d+\n<\?xml[\s\S]*<results\/>/);
    });

    it('a request ending in a newline, then a pause longer than the request deadline, keeps the connection', async () => {
      const client = await LengthClient.connect(server.port);
      try {
        expect(await client.sendRaw(Buffer.concat([frameRequest('<create/>'), Buffer.from('\n')]))).to.match(
          /<results\/>/,
        );
        await new Promise((resolve) => setTimeout(resolve, 1_200)); // past the request deadline, within the idle timeout
        expect(await client.send('<create/>')).to.match(/<results\/>/);
      } finally {
        client.close();
      }
    });

    it('after a framing error reply, a client that never closes its side is not waited for', async () => {
      const slow = await startTestServer({ framing: 'length', database, idleTimeoutMs: 30_000 });
      try {
        const connection = await watch(slow.port, { allowHalfOpen: true });
        connection.socket.write('x\n');
        const started = Date.now();
        const droppedAfter = await serverDropsAll(slow, started, 8_000);
        connection.socket.destroy();
        expect(droppedAfter, 'closed by the server well before the idle timeout (30 s)').to.not.equal(null);
        expect(droppedAfter as number).to.be.below(5_000);
        expect(connection.received()).to.match(/invalid length line/);
      } finally {
        await slow.close();
      }
    });
  });

  describe('at the connection limit, connections that have not sent a request go first', () => {
    it('bare framing: five silent connections do not lock a new client out; the oldest gives way', async () => {
      const server = await startTestServer({ framing: 'bare', database, maxConnections: 5, requestTimeoutMs: 20_000 });
      const silent: Watched[] = [];
      try {
        for (let index = 0; index < 5; index++) {
          silent.push(await watch(server.port));
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        // Three new clients at once: each takes the slot of the oldest silent connection.
        const started = Date.now();
        const fresh = await Promise.all(
          [0, 1, 2].map(async () => {
            const connection = await watch(server.port);
            connection.socket.write(frameRequest('<create/>'));
            return connection;
          }),
        );
        await Promise.all(
          fresh.map(async (connection) => {
            while (!/<\/?results/.test(connection.received())) await new Promise((resolve) => setTimeout(resolve, 10));
          }),
        );
        expect(Date.now() - started, 'answered at once, not after the silent ones time out').to.be.below(5_000);
        for (const connection of fresh) expect(connection.received()).to.match(/<results\/>/);
        // The three oldest gave way, each with an error reply; the two newest are still open.
        const closed = await Promise.all(silent.map((connection) => closedWithin(connection, Date.now(), 300)));
        expect(closed.map((ms) => ms !== null)).to.deep.equal([true, true, true, false, false]);
        for (const connection of silent.slice(0, 3))
          expect(parseResults(connection.received())[0]?.text).to.match(/connection limit/);
        for (const connection of fresh) connection.socket.destroy();
      } finally {
        for (const connection of silent) connection.socket.destroy();
        await server.close();
      }
    });

    it('length framing: connections that have sent requests keep their slots; a silent one gives way first', async () => {
      const server = await startTestServer({ framing: 'length', database, maxConnections: 3 });
      const clients: LengthClient[] = [];
      let silent: Watched | null = null;
      try {
        for (let index = 0; index < 2; index++) {
          const client = await LengthClient.connect(server.port);
          expect(await client.send('<create/>')).to.match(/<results\/>/);
          clients.push(client);
        }
        silent = await watch(server.port);
        await new Promise((resolve) => setTimeout(resolve, 50));
        // Full: the silent connection gives way to the new client.
        expect(await sendOnce(server.port, '<create/>')).to.match(/<results\/>/);
        expect(await closedWithin(silent, Date.now(), 3_000)).to.not.equal(null);
        // Full again with three active connections: a new one is refused, and the three still work.
        while (server.listener.connectionCount > 2) await new Promise((resolve) => setTimeout(resolve, 10));
        const third = await LengthClient.connect(server.port);
        expect(await third.send('<create/>')).to.match(/<results\/>/);
        clients.push(third);
        const refused = await watch(server.port);
        expect(await closedWithin(refused, Date.now(), 3_000), 'refused').to.not.equal(null);
        expect(refused.received()).to.equal('');
        for (const client of clients) expect(await client.send('<create/>')).to.match(/<results\/>/);
      } finally {
        silent?.socket.destroy();
        for (const client of clients) client.close();
        await server.close();
      }
    });
  });
});
