/** Limits that keep one client from hurting the server or others (found in review). */
import { expect } from 'chai';
import net from 'node:net';
import { MAX_REPLY_ELEMENTS } from '../../server/handlers/transactions.js';
import { applySchema } from '../../server/store/migrate.js';
import { frameRequest, LengthClient, sendRaw } from '../support/client.js';
import { ReplyDecoder } from '../../server/protocol/framing.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { parseResults } from '../support/xml.js';

describe('limits', function () {
  this.timeout(120_000);
  let server: TestServer;
  let filledOrderId: string;

  before(async () => {
    server = await startTestServer({ framing: 'length' });
    const client = await LengthClient.connect(server.port);
    await client.send(
      '<create><account id="1" balance="100000"/><account id="2" balance="0"/><symbol sym="LIM"><account id="2">1000</account></symbol></create>',
    );
    await client.send(`<transactions id="2">${'<order sym="LIM" amount="-1" limit="5"/>'.repeat(100)}</transactions>`);
    const bought = parseResults(
      await client.send(
        '<transactions id="1"><order sym="LIM" amount="100" limit="5"/><query id="101"/></transactions>',
      ),
    );
    filledOrderId = bought[0]?.attributes.id as string;
    expect(bought[1]?.children.filter((child) => child.name === 'executed')).to.have.length(100);
    client.close();
  });
  after(async () => server.close());

  it('a request whose reply would exceed the size limit gets "not processed" errors past the limit', async () => {
    const queries = 600;
    const client = await LengthClient.connect(server.port);
    const results = parseResults(
      await client.send(`<transactions id="1">${`<query id="${filledOrderId}"/>`.repeat(queries)}</transactions>`),
    );
    client.close();
    expect(results).to.have.length(queries);
    const answered = results.filter((node) => node.name === 'status').length;
    expect(answered).to.equal(Math.ceil(MAX_REPLY_ELEMENTS / 101));
    expect(results.slice(answered).every((node) => node.name === 'error' && /size limit/.test(node.text))).to.equal(
      true,
    );
  });

  it('a pipelining client that reads slowly gets every reply, in order, without stalling', async () => {
    // Bursts of small requests while reading slowly: the server's writes succeed but stay
    // buffered, which once left reading paused forever.
    const bursts = 100;
    const perBurst = 100;
    const requests = bursts * perBurst;
    const socket = net.connect({ host: '127.0.0.1', port: server.port });
    await new Promise((resolve) => socket.once('connect', resolve));
    const burst = Buffer.concat(
      Array.from({ length: perBurst }, (_, index) =>
        frameRequest(`<transactions id="1"><query id="${index + 1}"/></transactions>`),
      ),
    );
    const decoder = new ReplyDecoder('length');
    let replies = 0;
    let outOfOrder = 0;
    const done = new Promise<void>((resolve, reject) => {
      let timer = setTimeout(() => reject(new Error(`stalled after ${replies} of ${requests} replies`)), 10_000);
      socket.on('data', (chunk: Buffer) => {
        clearTimeout(timer);
        timer = setTimeout(() => reject(new Error(`stalled after ${replies} of ${requests} replies`)), 10_000);
        for (const event of decoder.push(chunk)) {
          if (event.type === 'error') {
            clearTimeout(timer);
            reject(event.error);
            return;
          }
          if (!event.xml.includes(`id="${(replies % perBurst) + 1}"`)) outOfOrder++;
          replies++;
        }
        if (replies === requests) {
          clearTimeout(timer);
          resolve();
        }
        socket.pause();
        setTimeout(() => socket.resume(), 2);
      });
    });
    for (let index = 0; index < bursts; index++) socket.write(burst);
    await done;
    socket.destroy();
    expect(outOfOrder).to.equal(0);
    expect(replies).to.equal(requests);
  });

  it('a bare-mode connection that never sends a byte is timed out with an error', async () => {
    const bare = await startTestServer({ framing: 'bare', database: server.database, requestTimeoutMs: 300 });
    try {
      const started = Date.now();
      const reply = await sendRaw(bare.port, [], { timeoutMs: 5_000 });
      expect(parseResults(reply)[0]?.text).to.match(/not received in full/);
      expect(Date.now() - started).to.be.lessThan(3_000);
    } finally {
      await bare.close();
    }
  });

  it('the error reply to a huge malformed request stays small', async () => {
    const bare = await startTestServer({ framing: 'bare', database: server.database });
    try {
      const reply = await sendRaw(bare.port, frameRequest(`<create>${'<a x="1">'.repeat(20_000)}`));
      expect(parseResults(reply)[0]?.name).to.equal('error');
      expect(reply.length).to.be.lessThan(1_000);
    } finally {
      await bare.close();
    }
  });

  it('applying an unchanged schema again does nothing (no DDL locks against live orders)', async () => {
    expect(await applySchema(server.pool)).to.deep.equal([]);
  });
});
