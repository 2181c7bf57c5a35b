/**
 * Workers forwarding their writes to the primary's one lane: the message protocol on
 * both sides, over an in-process channel (the real IPC channel is exercised by every
 * WORKERS=2 test of the server process). The lane here is an in-memory stand-in whose
 * answers the test decides.
 */
import { expect } from 'chai';
import {
  ForwardedWrites,
  answerForwardedWrites,
  isForwardedWritesMessage,
  type ForwardedResultsMessage,
  type ForwardedWritesMessage,
} from '../../server/store/forwarded-writes.js';
import {
  WriteNotAppliedError,
  WriteTooLongError,
  type WriteOutcome,
  type WriteRequest,
  type WriteSubmitter,
} from '../../server/store/write-lane.js';
import { RetriesExhaustedError } from '../../server/store/retry.js';
import { failureProblem } from '../../server/handlers/failure.js';

const order = (accountId: string): WriteRequest => ({ kind: 'order', accountId, sym: 'X', amount: '1', limit: '1' });

/** A lane that opens every order as id "<account>-1", except the accounts told to fail. */
class StandInLane implements WriteSubmitter {
  readonly retryCounters = { retries: 0, exhausted: 0 };
  readonly submitted: WriteRequest[] = [];
  readonly failures = new Map<string, unknown>();
  async submit(request: WriteRequest): Promise<WriteOutcome> {
    this.submitted.push(request);
    const failure = this.failures.get(request.accountId);
    if (failure !== undefined) throw failure;
    this.retryCounters.retries++;
    return { kind: 'order', result: { opened: true, orderId: `${request.accountId}-1`, fills: 0 } };
  }
}

/** A worker side wired to a primary side through structured clones, as IPC would carry them. */
function connected(lane: StandInLane) {
  const messages: ForwardedWritesMessage[] = [];
  const reported = { retries: 0, exhausted: 0 };
  let worker: ForwardedWrites | null = null;
  worker = new ForwardedWrites((message, sent) => {
    messages.push(structuredClone(message));
    sent(null);
    if (!isForwardedWritesMessage(message)) throw new Error('not a writes message');
    void answerForwardedWrites(lane, lane.retryCounters, reported, structuredClone(message), (answer) =>
      worker?.receive(structuredClone(answer)),
    );
  });
  return { worker, messages };
}

describe('forwarded writes (one write lane for every worker)', () => {
  it('writes of one event-loop turn travel as one message, in order, and each gets its own outcome', async () => {
    const lane = new StandInLane();
    const { worker, messages } = connected(lane);
    const outcomes = await Promise.all([
      worker.submit(order('a')),
      worker.submit(order('b')),
      worker.submit(order('c')),
    ]);
    expect(messages).to.have.length(1);
    expect(messages[0]?.requests.map((request) => request.accountId)).to.deep.equal(['a', 'b', 'c']);
    expect(outcomes.map((outcome) => (outcome.result as { orderId: string }).orderId)).to.deep.equal([
      'a-1',
      'b-1',
      'c-1',
    ]);
    // A later turn is a later message.
    await worker.submit(order('d'));
    expect(messages).to.have.length(2);
    expect(worker.pendingCount).to.equal(0);
  });

  it("the lane's retries reach the worker's counters, each counted once", async () => {
    const lane = new StandInLane();
    const { worker } = connected(lane);
    await Promise.all([worker.submit(order('a')), worker.submit(order('b'))]);
    await worker.submit(order('c'));
    expect(worker.retryCounters).to.deep.equal({ retries: 3, exhausted: 0 });
  });

  it('failures keep the class a reply depends on: too long, not applied and retries exhausted; others are unknown', async () => {
    const lane = new StandInLane();
    lane.failures.set('long', new WriteTooLongError(5_000));
    lane.failures.set('lost', new WriteNotAppliedError(new Error('connection lost')));
    lane.failures.set('busy', new RetriesExhaustedError(100, new Error('40001')));
    lane.failures.set('odd', new Error('connection terminated'));
    const { worker } = connected(lane);
    const settled = await Promise.allSettled(
      ['long', 'lost', 'busy', 'odd', 'fine'].map((id) => worker.submit(order(id))),
    );
    const reasons = settled.map((result) => (result.status === 'rejected' ? result.reason : null));
    expect(reasons[0]).to.be.instanceOf(WriteTooLongError);
    expect((reasons[0] as WriteTooLongError).limitMs).to.equal(5_000);
    expect(reasons[1]).to.be.instanceOf(WriteNotAppliedError);
    expect(reasons[2]).to.be.instanceOf(RetriesExhaustedError);
    expect(failureProblem(reasons[0], 'order').code).to.equal('write_too_long');
    expect(failureProblem(reasons[1], 'order').code).to.equal('write_not_applied');
    expect(failureProblem(reasons[2], 'order').code).to.equal('not_applied');
    expect(failureProblem(reasons[3], 'order').code).to.equal('outcome_unknown');
    expect(settled[4]?.status).to.equal('fulfilled');
  });

  it('when the primary goes away, writes it held are unknown, writes never sent (then or later) are not applied', async () => {
    const sent: ForwardedWritesMessage[] = [];
    const worker = new ForwardedWrites((message, done) => {
      sent.push(message);
      done(null);
    });
    const held = worker.submit(order('a'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(sent).to.have.length(1);
    const unsent = worker.submit(order('b'));
    worker.close('the primary process went away');
    const [heldResult, unsentResult] = await Promise.allSettled([held, unsent]);
    expect(heldResult.status).to.equal('rejected');
    expect(failureProblem((heldResult as PromiseRejectedResult).reason, 'order').code).to.equal('outcome_unknown');
    expect((unsentResult as PromiseRejectedResult).reason).to.be.instanceOf(WriteNotAppliedError);
    const later = await worker.submit(order('c')).catch((error: unknown) => error);
    expect(later).to.be.instanceOf(WriteNotAppliedError);
    expect(sent).to.have.length(1);
    expect(worker.pendingCount).to.equal(0);
  });

  it('a message that could not be sent fails its writes as not applied', async () => {
    const worker = new ForwardedWrites((_message, done) => done(new Error('channel closed')));
    const result = await worker.submit(order('a')).catch((error: unknown) => error);
    expect(result).to.be.instanceOf(WriteNotAppliedError);
  });

  it('ignores messages that are not its answers, and answers for writes it no longer waits for', () => {
    const worker = new ForwardedWrites((_message, done) => done(null));
    expect(worker.receive({ type: 'prom-client:getMetricsReq' })).to.equal(false);
    const stray: ForwardedResultsMessage = {
      type: 'exchange-write-results',
      id: 99,
      results: [],
      retries: 0,
      exhausted: 0,
    };
    expect(worker.receive(stray)).to.equal(true);
  });
});
