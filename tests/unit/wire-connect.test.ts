/**
 * The clients' connect (client/wire.ts) against a real listener in a worker thread: a
 * connection reset before the client saw it up is tried again, like a refusal. (The stress
 * client once gave a killed server up for gone with "ECONNRESET" instead of backing off.)
 */
import { Worker } from 'node:worker_threads';
import { expect } from 'chai';
import { connect } from '../../client/wire.js';

/**
 * A listener on its own thread (so it accepts while this thread is blocked) that resets
 * its first `resets` connections and keeps the later ones open. Posts its port.
 */
const RESETTING_LISTENER = `
const net = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
let seen = 0;
const server = net.createServer((socket) => {
  seen++;
  if (seen <= workerData.resets) socket.resetAndDestroy();
  else socket.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));
parentPort.on('message', () => server.close(() => process.exit(0)));
`;

function startListener(resets: number): Promise<{ port: number; worker: Worker }> {
  const worker = new Worker(RESETTING_LISTENER, { eval: true, workerData: { resets } });
  return new Promise((resolve, reject) => {
    worker.once('message', (port: number) => resolve({ port, worker }));
    worker.once('error', reject);
  });
}

/** Blocks this thread: the connection's reset arrives before its event loop sees it up. */
function blockFor(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('client connect', () => {
  it('a connection reset before it was up is tried again, like a refusal', async () => {
    const { port, worker } = await startListener(1);
    try {
      const connecting = connect('127.0.0.1', port, { retryRefusedForMs: 5_000 });
      // node:net issues the connect on the next tick (the address needs no lookup): block after it.
      process.nextTick(() => blockFor(300));
      const socket = await connecting;
      expect(socket.remotePort).to.equal(port);
      socket.destroy();
    } finally {
      worker.postMessage('stop');
    }
  });
});
