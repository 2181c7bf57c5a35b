/**
 * One write lane for every worker of a host: each worker forwards its orders and
 * cancels to the primary, whose lane (write-lane.ts) gathers them into batches. With
 * a lane per worker, two workers made two half-size batches that took turns on the
 * write lock, each paying a batch's fixed cost (measured: ×0.67 of one worker).
 *
 * The channel is node:cluster's IPC, but nothing here knows that: the worker side
 * sends messages through a function, the primary side answers through one. A worker
 * sends the writes of one event-loop turn as one message; the primary answers a
 * message once all its writes are settled, each durable or known to have failed.
 * If the primary goes away, the writes it held have an unknown outcome, exactly as
 * when a whole single-process server dies mid-batch.
 */
import { RetriesExhaustedError, type RetryCounters } from './retry.js';
import {
  WriteNotAppliedError,
  WriteTooLongError,
  type WriteOutcome,
  type WriteRequest,
  type WriteSubmitter,
} from './write-lane.js';
import { isMessageWithList } from './ipc-message.js';
import { TurnBatchedCalls } from './turn-batched-calls.js';

export type ForwardedWritesMessage = { type: 'exchange-writes'; id: number; requests: WriteRequest[] };

/** A failure, as far as a reply needs it: its class (by name), its text and its figures. */
type ForwardedError = { name: string; message: string; limitMs?: number; attempts?: number };
type ForwardedResult = { ok: true; outcome: WriteOutcome } | { ok: false; error: ForwardedError };

export type ForwardedResultsMessage = {
  type: 'exchange-write-results';
  id: number;
  results: ForwardedResult[];
  /** Serialization retries the lane made since its last answer to any worker (so the workers' sum is the lane's). */
  retries: number;
  exhausted: number;
};

export function isForwardedWritesMessage(message: unknown): message is ForwardedWritesMessage {
  return isMessageWithList(message, 'exchange-writes', 'requests');
}

function isForwardedResultsMessage(message: unknown): message is ForwardedResultsMessage {
  return isMessageWithList(message, 'exchange-write-results', 'results');
}

function encodeError(error: unknown): ForwardedError {
  if (error instanceof WriteTooLongError) return { name: error.name, message: error.message, limitMs: error.limitMs };
  if (error instanceof RetriesExhaustedError)
    return { name: error.name, message: error.message, attempts: error.attempts };
  if (error instanceof Error) return { name: error.name, message: error.message };
  return { name: 'Error', message: String(error) };
}

/** The classes handlers tell apart (handlers/failure.ts); any other failure is an outcome unknown. */
function decodeError(error: ForwardedError): Error {
  if (error.name === 'WriteTooLongError' && error.limitMs !== undefined) return new WriteTooLongError(error.limitMs);
  if (error.name === 'RetriesExhaustedError' && error.attempts !== undefined)
    return new RetriesExhaustedError(error.attempts, new Error(error.message));
  if (error.name === 'WriteNotAppliedError') return new WriteNotAppliedError(new Error(error.message));
  return new Error(`write lane: ${error.message}`);
}

/** The worker's side: a WriteSubmitter whose lane is in another process. */
export class ForwardedWrites implements WriteSubmitter {
  private readonly calls: TurnBatchedCalls<WriteRequest, WriteOutcome>;
  /** The lane's serialization retries, as its answers report them. */
  readonly retryCounters: RetryCounters = { retries: 0, exhausted: 0 };

  constructor(
    /** Sends one message to the lane; calls back with an error if it could not be sent. */
    send: (message: ForwardedWritesMessage, sent: (error: Error | null) => void) => void,
  ) {
    // Writes of the same event-loop turn (many sockets' data) travel as one message.
    this.calls = new TurnBatchedCalls((id, requests, sent) => send({ type: 'exchange-writes', id, requests }, sent), {
      // Never reached the lane: nothing of it was applied.
      notSent: (reason) => new WriteNotAppliedError(reason),
      // What the lane held may or may not have committed.
      lost: (reason) => new Error(`write lane: ${reason.message}; the outcome of writes in flight is unknown`),
    });
  }

  /** Writes waiting for an answer (sent or not yet). */
  get pendingCount(): number {
    return this.calls.pendingCount;
  }

  submit(request: WriteRequest): Promise<WriteOutcome> {
    return this.calls.call(request);
  }

  /** Takes an answer of the lane; false for any other message. */
  receive(message: unknown): boolean {
    if (!isForwardedResultsMessage(message)) return false;
    this.retryCounters.retries += message.retries;
    this.retryCounters.exhausted += message.exhausted;
    this.calls.answer(message.id, (_request, index) => {
      const result = message.results[index];
      if (result?.ok) return { ok: true, value: result.outcome };
      return {
        ok: false,
        error: result ? decodeError(result.error) : new Error('write lane: no result for this write'),
      };
    });
    return true;
  }

  /** The lane went away: nothing more is sent. */
  close(reason: string): void {
    this.calls.close(reason);
  }
}

/**
 * The primary's side: runs one message's writes on the lane (in order, so they join the
 * lane's queue together) and answers once every one is settled.
 */
export async function answerForwardedWrites(
  lane: WriteSubmitter,
  laneRetries: RetryCounters,
  reported: RetryCounters,
  message: ForwardedWritesMessage,
  answer: (message: ForwardedResultsMessage) => void,
): Promise<void> {
  const settled = await Promise.allSettled(message.requests.map((request) => lane.submit(request)));
  const results: ForwardedResult[] = settled.map((result) =>
    result.status === 'fulfilled'
      ? { ok: true, outcome: result.value }
      : { ok: false, error: encodeError(result.reason) },
  );
  const retries = laneRetries.retries - reported.retries;
  const exhausted = laneRetries.exhausted - reported.exhausted;
  reported.retries = laneRetries.retries;
  reported.exhausted = laneRetries.exhausted;
  answer({ type: 'exchange-write-results', id: message.id, results, retries, exhausted });
}
