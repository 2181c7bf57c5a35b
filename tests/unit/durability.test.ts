/**
 * The durability barrier's bookkeeping, with a flusher the test controls (the
 * real flush is a PostgreSQL commit, exercised by the fault tests that crash it).
 */
import { expect } from 'chai';
import { DurabilityBarrier, DurabilityLostError, parseLsn } from '../../server/store/durability.js';
import { E2, controlledFlusher, mark } from '../support/controlled-flusher.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('durability barrier', () => {
  it('reads WAL positions as PostgreSQL prints them', () => {
    expect(parseLsn('0/0')).to.equal(0n);
    expect(parseLsn('16/B374D848')).to.equal((0x16n << 32n) | 0xb374d848n);
    expect(parseLsn('FFFFFFFF/FFFFFFFF')).to.equal((1n << 64n) - 1n);
    for (const bad of ['', '16', '16/', '/1', '1/2/3', 'G/0', '123456789/0'])
      expect(() => parseLsn(bad), bad).to.throw(/WAL position/);
  });

  it('does not flush what PostgreSQL already reported flushed', async () => {
    const flusher = controlledFlusher();
    const barrier = new DurabilityBarrier(flusher.flush);
    await barrier.waitFor(mark(100n, 100n));
    await barrier.waitFor(mark(50n, 10n));
    expect(flusher.started()).to.equal(0);
  });

  it('one flush serves every wait that arrived before it started; later waits share the next', async () => {
    const flusher = controlledFlusher();
    const barrier = new DurabilityBarrier(flusher.flush);
    const done: number[] = [];
    const first = barrier.waitFor(mark(10n, 0n)).then(() => done.push(1));
    await tick();
    expect(flusher.started()).to.equal(1);
    // Committed while that flush runs: it may not cover them, so they wait for the next one.
    const later = Array.from({ length: 20 }, (_, index) =>
      barrier.waitFor(mark(20n, 0n)).then(() => done.push(100 + index)),
    );
    await tick();
    expect(flusher.started(), 'the second flush waits for the first').to.equal(1);
    flusher.finish(15n);
    await first;
    await tick();
    expect(done).to.deep.equal([1]);
    expect(flusher.started(), 'one flush for all twenty').to.equal(2);
    flusher.finish(25n);
    await Promise.all(later);
    expect(done).to.have.length(21);
    expect(flusher.started()).to.equal(2);
  });

  it('waits queued behind a flush that turns out to cover them need no flush of their own', async () => {
    const flusher = controlledFlusher();
    const barrier = new DurabilityBarrier(flusher.flush);
    const first = barrier.waitFor(mark(10n, 0n));
    await tick();
    const queued = [barrier.waitFor(mark(25n, 0n)), barrier.waitFor(mark(20n, 0n))];
    await tick();
    flusher.finish(30n);
    await Promise.all([first, ...queued]);
    expect(flusher.started()).to.equal(1);
  });

  it('a flush that covers too little is followed by another', async () => {
    const flusher = controlledFlusher();
    const barrier = new DurabilityBarrier(flusher.flush);
    let resolved = false;
    const wait = barrier.waitFor(mark(50n, 0n)).then(() => (resolved = true));
    await tick();
    flusher.finish(40n);
    await tick();
    await tick();
    expect(resolved).to.equal(false);
    expect(flusher.started()).to.equal(2);
    flusher.finish(60n);
    await wait;
  });

  it('after a PostgreSQL restart, a reply committed before it is never acknowledged by a flush after it', async () => {
    const flusher = controlledFlusher();
    const barrier = new DurabilityBarrier(flusher.flush);
    let before: unknown = null;
    const waiting = barrier.waitFor(mark(100n, 0n)).catch((error: unknown) => (before = error));
    await tick();
    // The restarted server has written past 100 already: positions of two runs do not compare.
    flusher.finish(500n, E2);
    await waiting;
    expect(before).to.be.instanceOf(DurabilityLostError);
    // A mark of the new run is served by what the new run flushed; a late one of the old run
    // that was not yet on disk still fails, and one that was on disk needs nothing.
    await barrier.waitFor(mark(400n, 0n, E2));
    let late: unknown = null;
    const lateWait = barrier.waitFor(mark(10n, 5n)).catch((error: unknown) => (late = error));
    await tick();
    flusher.finish(600n, E2);
    await lateWait;
    expect(late).to.be.instanceOf(DurabilityLostError);
    await barrier.waitFor(mark(10n, 10n));
    await barrier.waitFor(mark(450n, 0n, E2));
    expect(flusher.started()).to.equal(2);
  });

  it('a failed flush rejects its waiters (their outcome is unknown) and the next wait flushes again', async () => {
    const flusher = controlledFlusher();
    const barrier = new DurabilityBarrier(flusher.flush);
    const failing = barrier.waitFor(mark(10n, 0n));
    await tick();
    flusher.fail();
    let failure: unknown = null;
    await failing.catch((error: unknown) => (failure = error));
    expect(String(failure)).to.match(/connection lost/);
    const next = barrier.waitFor(mark(10n, 0n));
    await tick();
    expect(flusher.started()).to.equal(2);
    flusher.finish(10n);
    await next;
  });

  describe('riding on a synchronous commit in flight', () => {
    /** A commit the test reports (or fails) when it chooses. */
    function commitInFlight(barrier: DurabilityBarrier) {
      let report: (mark: { needed: bigint; flushed: bigint; epoch: string }) => void = () => undefined;
      let fail: (error: Error) => void = () => undefined;
      barrier.syncCommitInFlight(
        new Promise((resolve, reject) => {
          report = resolve;
          fail = reject;
        }),
      );
      return { report, fail };
    }

    it('a wait the commit covers needs no flush of its own', async () => {
      const flusher = controlledFlusher();
      const barrier = new DurabilityBarrier(flusher.flush);
      await barrier.waitFor(mark(10n, 10n)); // the epoch is known
      const commit = commitInFlight(barrier);
      let resolved = false;
      const wait = barrier.waitFor(mark(100n, 50n)).then(() => (resolved = true));
      await tick();
      expect(resolved).to.equal(false);
      expect(flusher.started(), 'it waits for the commit, not for a flush').to.equal(0);
      commit.report(mark(130n, 120n));
      await wait;
      expect(flusher.started()).to.equal(0);
      // What the commit reported serves later waits too.
      await barrier.waitFor(mark(120n, 0n));
      expect(flusher.started()).to.equal(0);
    });

    it('a commit that covers too little, fails, or reports another run of PostgreSQL is followed by a flush', async () => {
      for (const outcome of ['too little', 'failed', 'other epoch'] as const) {
        const flusher = controlledFlusher();
        const barrier = new DurabilityBarrier(flusher.flush);
        await barrier.waitFor(mark(10n, 10n));
        const commit = commitInFlight(barrier);
        const wait = barrier.waitFor(mark(100n, 50n));
        await tick();
        if (outcome === 'too little') commit.report(mark(90n, 90n));
        else if (outcome === 'failed') commit.fail(new Error('connection lost'));
        else commit.report(mark(500n, 500n, E2));
        await tick();
        await tick();
        expect(flusher.started(), outcome).to.equal(1);
        flusher.finish(100n);
        await wait;
      }
    });

    it('a commit that takes longer than the ride limit is not waited for', async () => {
      const flusher = controlledFlusher();
      const barrier = new DurabilityBarrier(flusher.flush, 20);
      await barrier.waitFor(mark(10n, 10n));
      commitInFlight(barrier); // never reports: a long sweep under the write lock
      const wait = barrier.waitFor(mark(100n, 50n));
      await tick();
      expect(flusher.started()).to.equal(0);
      await new Promise((resolve) => setTimeout(resolve, 60));
      expect(flusher.started(), 'flushed on its own after the limit').to.equal(1);
      flusher.finish(100n);
      await wait;
    });

    it('once the commit has reported, waits flush at once', async () => {
      const flusher = controlledFlusher();
      const barrier = new DurabilityBarrier(flusher.flush, 10_000);
      await barrier.waitFor(mark(10n, 10n));
      commitInFlight(barrier).report(mark(20n, 20n));
      await tick();
      const wait = barrier.waitFor(mark(100n, 50n));
      await tick();
      expect(flusher.started()).to.equal(1);
      flusher.finish(100n);
      await wait;
    });
  });
});
