/**
 * One durability barrier for every worker of a host: with the shared write lane
 * (forwarded-writes.ts), a worker's status reads wait for their WAL flush through the
 * primary, whose barrier rides on the lane's synchronous commits and merges every
 * process's flushes into one. Each worker used to force a flush of its own for nearly
 * every read batch, an fsync beside the lane's that the lane's commit queued behind.
 *
 * The channel is node:cluster's IPC, but nothing here knows that, as for the writes. A
 * worker sends the waits of one event-loop turn as one message; the primary answers
 * once each is durable or known not to be. A wait already covered by what the worker
 * knows is durable sends nothing. If the primary goes away, the waits it held fail:
 * their replies' outcome is unknown, as when a flush fails.
 */
import { DurabilityLostError, type DurabilityWaiter, type WalMark } from './durability.js';
import { isMessageWithList } from './ipc-message.js';
import { TurnBatchedCalls } from './turn-batched-calls.js';

/** A WAL mark as IPC carries it (JSON has no bigint). */
type MarkOnWire = { needed: string; flushed: string; epoch: string };

export type ForwardedDurabilityMessage = { type: 'exchange-durable'; id: number; marks: MarkOnWire[] };
type DurabilityAnswer = { ok: true } | { ok: false; lost: boolean; message: string };
export type ForwardedDurabilityResults = { type: 'exchange-durable-results'; id: number; results: DurabilityAnswer[] };

export function isForwardedDurabilityMessage(message: unknown): message is ForwardedDurabilityMessage {
  return isMessageWithList(message, 'exchange-durable', 'marks');
}

function isForwardedDurabilityResults(message: unknown): message is ForwardedDurabilityResults {
  return isMessageWithList(message, 'exchange-durable-results', 'results');
}

const toWire = (mark: WalMark): MarkOnWire => ({
  needed: mark.needed.toString(),
  flushed: mark.flushed.toString(),
  epoch: mark.epoch,
});
const fromWire = (mark: MarkOnWire): WalMark => ({
  needed: BigInt(mark.needed),
  flushed: BigInt(mark.flushed),
  epoch: mark.epoch,
});

/** The worker's side: waits for durability through the primary's barrier. */
export class ForwardedDurability implements DurabilityWaiter {
  private readonly calls: TurnBatchedCalls<WalMark, void>;
  /** What the primary confirmed durable, in the epoch it belongs to. */
  private epoch: string | null = null;
  private durable = 0n;

  constructor(
    /** Sends one message to the primary; calls back with an error if it could not be sent. */
    send: (message: ForwardedDurabilityMessage, sent: (error: Error | null) => void) => void,
  ) {
    // A wait that failed, whether or not it reached the primary, leaves its reply's outcome unknown.
    const unknown = (reason: Error) => unknownOutcome(reason.message);
    this.calls = new TurnBatchedCalls(
      (id, marks, sent) => send({ type: 'exchange-durable', id, marks: marks.map(toWire) }, sent),
      { notSent: unknown, lost: unknown },
    );
  }

  waitFor(mark: WalMark): Promise<void> {
    // Already on disk when the mark was taken, or confirmed since: nothing to ask.
    if (mark.flushed >= mark.needed) return Promise.resolve();
    if (mark.epoch === this.epoch && mark.needed <= this.durable) return Promise.resolve();
    return this.calls.call(mark);
  }

  /** Takes an answer of the primary; false for any other message. */
  receive(message: unknown): boolean {
    if (!isForwardedDurabilityResults(message)) return false;
    this.calls.answer(message.id, (mark, index) => {
      const result = message.results[index];
      if (result?.ok) {
        this.confirmed(mark);
        return { ok: true, value: undefined };
      }
      if (result?.lost) return { ok: false, error: new DurabilityLostError() };
      return { ok: false, error: unknownOutcome(result?.message ?? 'no answer for this wait') };
    });
    return true;
  }

  private confirmed(mark: WalMark): void {
    if (mark.epoch !== this.epoch) {
      this.epoch = mark.epoch;
      this.durable = mark.needed;
    } else if (mark.needed > this.durable) {
      this.durable = mark.needed;
    }
  }

  /** The primary went away: the waits it held, and any later one, fail. */
  close(reason: string): void {
    this.calls.close(reason);
  }
}

function unknownOutcome(reason: string): Error {
  return new Error(`durability: ${reason}; the outcome of the reply is unknown`);
}

/** The primary's side: waits for every mark of one message on its barrier, and answers once all are settled. */
export async function answerForwardedDurability(
  barrier: DurabilityWaiter,
  message: ForwardedDurabilityMessage,
  answer: (message: ForwardedDurabilityResults) => void,
): Promise<void> {
  const settled = await Promise.allSettled(message.marks.map((mark) => barrier.waitFor(fromWire(mark))));
  const results: DurabilityAnswer[] = settled.map((result) =>
    result.status === 'fulfilled'
      ? { ok: true }
      : {
          ok: false,
          lost: result.reason instanceof DurabilityLostError,
          message: result.reason instanceof Error ? result.reason.message : String(result.reason),
        },
  );
  answer({ type: 'exchange-durable-results', id: message.id, results });
}
