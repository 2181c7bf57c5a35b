/**
 * The queue behind group commit (writes) and batched status reads. Each batch is held
 * open by the test until it says so, so what forms a batch is decided by the test's
 * steps, not by timing.
 */
import { expect } from 'chai';
import { BatchQueue } from '../../server/store/batch-queue.js';

type Run = {
  items: number[];
  finish: (results: Array<PromiseSettledResult<string>>) => void;
  fail: (error: unknown) => void;
};

/** A queue whose batches wait for the test: `runs` lists every batch started, in order. */
function heldQueue(maxBatch: number) {
  const runs: Run[] = [];
  const queue = new BatchQueue<number, string>(
    (items) => new Promise((resolve, reject) => runs.push({ items: [...items], finish: resolve, fail: reject })),
    maxBatch,
  );
  return { queue, runs };
}

const fulfilled = (items: number[]): Array<PromiseSettledResult<string>> =>
  items.map((item) => ({ status: 'fulfilled', value: `done ${item}` }));

/** Lets the queue's promise chain move on (no timers: only queued microtasks and I/O callbacks). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('BatchQueue', () => {
  it('runs the first item of an idle queue at once, alone', () => {
    const { queue, runs } = heldQueue(8);
    void queue.submit(1);
    expect(runs.map((run) => run.items)).to.deep.equal([[1]]);
  });

  it('items arriving during a run form the next batch, in arrival order, and each gets its own result', async () => {
    const { queue, runs } = heldQueue(8);
    const first = queue.submit(1);
    const later = [2, 3, 4].map((item) => queue.submit(item));
    expect(runs).to.have.length(1);
    runs[0]?.finish(fulfilled([1]));
    expect(await first).to.equal('done 1');
    await settle();
    expect(runs.map((run) => run.items)).to.deep.equal([[1], [2, 3, 4]]);
    runs[1]?.finish(fulfilled([2, 3, 4]));
    expect(await Promise.all(later)).to.deep.equal(['done 2', 'done 3', 'done 4']);
  });

  it('a batch holds at most maxBatch items; the rest wait for the next, still in order', async () => {
    const { queue, runs } = heldQueue(3);
    const all = Array.from({ length: 8 }, (_, item) => queue.submit(item));
    for (let index = 0; index < 4; index++) {
      await settle();
      const run = runs[index] as Run;
      run.finish(fulfilled(run.items));
    }
    expect(await Promise.all(all)).to.deep.equal(Array.from({ length: 8 }, (_, item) => `done ${item}`));
    expect(runs.map((run) => run.items)).to.deep.equal([[0], [1, 2, 3], [4, 5, 6], [7]]);
  });

  it('a failing batch rejects its own items only; the next batch still runs', async () => {
    const { queue, runs } = heldQueue(8);
    const first = queue.submit(1);
    const failing = [queue.submit(2), queue.submit(3)];
    runs[0]?.finish(fulfilled([1]));
    await settle();
    const afterwards = queue.submit(4);
    const outage = new Error('connection lost');
    runs[1]?.fail(outage);
    const outcomes = await Promise.allSettled(failing);
    expect(outcomes).to.deep.equal([
      { status: 'rejected', reason: outage },
      { status: 'rejected', reason: outage },
    ]);
    await settle();
    expect(runs.map((run) => run.items)).to.deep.equal([[1], [2, 3], [4]]);
    runs[2]?.finish(fulfilled([4]));
    expect(await first).to.equal('done 1');
    expect(await afterwards).to.equal('done 4');
  });

  it('a rejected result fails that item alone; a missing result fails, never resolves', async () => {
    const { queue, runs } = heldQueue(8);
    void queue.submit(0);
    const items = [queue.submit(1), queue.submit(2), queue.submit(3)];
    runs[0]?.finish(fulfilled([0]));
    await settle();
    const refused = new Error('refused');
    runs[1]?.finish([
      { status: 'fulfilled', value: 'done 1' },
      { status: 'rejected', reason: refused },
    ]);
    const outcomes = await Promise.allSettled(items);
    expect(outcomes[0]).to.deep.equal({ status: 'fulfilled', value: 'done 1' });
    expect(outcomes[1]).to.deep.equal({ status: 'rejected', reason: refused });
    expect(outcomes[2]?.status).to.equal('rejected');
    expect(((outcomes[2] as PromiseRejectedResult).reason as Error).message).to.equal('batch returned no result');
  });

  it('an idle queue starts again at once after its last batch', async () => {
    const { queue, runs } = heldQueue(8);
    const first = queue.submit(1);
    runs[0]?.finish(fulfilled([1]));
    await first;
    await settle();
    void queue.submit(2);
    expect(runs.map((run) => run.items)).to.deep.equal([[1], [2]]);
  });
});
