/**
 * Workers waiting for durability on the primary's barrier: the message protocol on both
 * sides, over an in-process channel carrying structured clones as IPC would (the real
 * channel is exercised by every WORKERS=2 test of the server process). The primary side
 * is a real DurabilityBarrier whose flushes the test ends.
 */
import { expect } from 'chai';
import { DurabilityBarrier, DurabilityLostError, type WalMark } from '../../server/store/durability.js';
import {
  ForwardedDurability,
  answerForwardedDurability,
  isForwardedDurabilityMessage,
  type ForwardedDurabilityMessage,
} from '../../server/store/forwarded-durability.js';
import { E2, controlledFlusher, mark } from '../support/controlled-flusher.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A worker side wired to a primary barrier. */
function connected(options: { sendFails?: boolean } = {}) {
  const flusher = controlledFlusher();
  const barrier = new DurabilityBarrier(flusher.flush);
  const messages: ForwardedDurabilityMessage[] = [];
  let worker: ForwardedDurability | null = null;
  worker = new ForwardedDurability((message, sent) => {
    if (options.sendFails) return sent(new Error('channel closed'));
    messages.push(structuredClone(message));
    sent(null);
    if (!isForwardedDurabilityMessage(message)) throw new Error('not a durability message');
    void answerForwardedDurability(barrier, structuredClone(message), (answer) =>
      worker?.receive(structuredClone(answer)),
    );
  });
  return { worker, messages, flusher, barrier };
}

/** Settles to 'ok' or the error, without throwing. */
const outcome = (wait: Promise<void>): Promise<unknown> =>
  wait.then(
    () => 'ok',
    (error: unknown) => error,
  );

describe('forwarded durability (workers wait on the primary barrier)', () => {
  it('a mark already flushed when it was taken sends nothing', async () => {
    const { worker, messages } = connected();
    await worker.waitFor(mark(100n, 100n));
    await tick();
    expect(messages).to.have.length(0);
  });

  it('waits of one turn travel as one message; each resolves once the primary barrier covers it', async () => {
    const { worker, messages, flusher } = connected();
    const settled: string[] = [];
    const waits = [mark(10n, 0n), mark(30n, 0n), mark(20n, 5n)].map((wal: WalMark, index) =>
      worker.waitFor(wal).then(() => settled.push(`wait ${index}`)),
    );
    await tick();
    expect(messages).to.have.length(1);
    expect(messages[0]?.marks).to.deep.equal([
      { needed: '10', flushed: '0', epoch: mark(0n, 0n).epoch },
      { needed: '30', flushed: '0', epoch: mark(0n, 0n).epoch },
      { needed: '20', flushed: '5', epoch: mark(0n, 0n).epoch },
    ]);
    expect(flusher.started(), 'one flush on the primary for all three').to.equal(1);
    flusher.finish(30n);
    await Promise.all(waits);
    expect(settled).to.have.length(3);
  });

  it('what the primary confirmed serves later waits without a message', async () => {
    const { worker, messages, flusher } = connected();
    const first = worker.waitFor(mark(50n, 0n));
    await tick();
    flusher.finish(60n);
    await first;
    await worker.waitFor(mark(40n, 0n));
    await worker.waitFor(mark(50n, 10n));
    expect(messages, 'covered by the first answer').to.have.length(1);
    // Beyond it, or of another run of PostgreSQL: asked again.
    const beyond = worker.waitFor(mark(70n, 0n));
    const otherRun = outcome(worker.waitFor(mark(10n, 0n, E2)));
    await tick();
    expect(messages).to.have.length(2);
    flusher.finish(80n);
    await beyond;
    expect(await otherRun, 'a mark of another run than the flush is lost').to.be.instanceOf(DurabilityLostError);
  });

  it('a flush that fails on the primary fails the waits, saying their outcome is unknown', async () => {
    const { worker, flusher } = connected();
    const wait = outcome(worker.waitFor(mark(10n, 0n)));
    await tick();
    flusher.fail();
    const failure = await wait;
    expect(failure).to.be.instanceOf(Error);
    expect(String(failure)).to.match(/connection lost/);
  });

  it('the primary going away fails the waits it held and every later one; a failed send fails its own', async () => {
    const { worker, messages } = connected();
    const held = outcome(worker.waitFor(mark(10n, 0n)));
    await tick();
    expect(messages).to.have.length(1);
    worker.close('the primary process went away');
    expect(String(await held)).to.match(/primary process went away.*outcome of the reply is unknown/);
    expect(String(await outcome(worker.waitFor(mark(20n, 0n))))).to.match(/primary process went away/);
    // Already flushed needs nobody.
    expect(await outcome(worker.waitFor(mark(20n, 20n)))).to.equal('ok');

    const unsent = connected({ sendFails: true });
    expect(String(await outcome(unsent.worker.waitFor(mark(10n, 0n))))).to.match(/channel closed.*unknown/);
  });
});
