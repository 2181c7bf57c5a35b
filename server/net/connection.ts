/**
 * One client connection: bytes in through the framer, requests answered one at
 * a time in arrival order, replies framed per the configured mode. Knows
 * sockets and timers; knows nothing of XML content or the database.
 */
import type net from 'node:net';
import { RequestFramer, frameReply, type FrameEvent, type ReplyFraming } from '../protocol/framing.js';
import type { BudgetWaiter, ByteBudget } from './byte-budget.js';
import { detailedProblem, type Problem } from '../errors.js';

export type ConnectionOptions = {
  framing: ReplyFraming;
  /** Also what one connection may hold of requests not yet answered (one large, or many small). */
  maxRequestBytes: number;
  /**
   * A request must arrive whole within this long of its first byte (slow clients
   * are cut off); in bare mode the clock starts at connect, since the connection
   * exists only to send one request.
   */
  requestTimeoutMs: number;
  /** A connection with nothing in flight is closed after this long without traffic. */
  idleTimeoutMs: number;
  /** SPEC: after this long without data, a short body holding a complete document is processed. */
  graceMs: number;
  /** Requests buffered before reading pauses (pipelining clients in length mode). */
  maxQueuedRequests: number;
};

export type ConnectionHooks = {
  /** Answers one request body with a reply document; must not throw. */
  processRequest: (body: Buffer) => Promise<string>;
  /** The reply for a framing failure (bad length line, oversize, timeout). */
  renderError: (problem: Problem) => string;
  isCompleteDocument: (body: Buffer) => boolean;
};

/** After our last reply has been handed to the kernel, how long the peer has to close its side. */
const CLOSE_AFTER_REPLY_MS = 1_000;

/** How often a connection whose replies are not being read checks for progress. */
const STALL_CHECK_MS = 250;
/** Reading nothing of its replies this long while others wait for memory closes a connection. */
const STALL_UNDER_PRESSURE_MS = 1_000;

/** The full completeness check parses the whole body; a client must not be able to trigger it often. */
const MIN_COMPLETENESS_CHECK_INTERVAL_MS = 1_000;

export class Connection {
  private readonly framer: RequestFramer;
  private readonly queue: FrameEvent[] = [];
  private busy = false;
  /** No more requests will be taken: bare mode answered one, a fatal error, or shutdown. */
  private accepting = true;
  private clientEnded = false;
  private closed = false;
  private requestTimer: NodeJS.Timeout | null = null;
  private graceTimer: NodeJS.Timeout | null = null;
  private closeTimer: NodeJS.Timeout | null = null;
  /** Restarted by progress only: a byte of a request, a request taken, a reply sent. Blank lines are not progress. */
  private readonly idleTimer: NodeJS.Timeout;
  private sentRequest = false;
  private lastCompletenessCheck = 0;
  private sawData = false;
  /** Bytes of the request being answered (taken off the queue, reply not yet written). */
  private inProcessBytes = 0;
  /** Requests (and framing errors) the framer has produced so far. */
  private framedCount = 0;
  /**
   * framedCount when the request now being received was admitted (its whole declared length
   * charged to the budget); any other value: not admitted. A count, not a flag, because one
   * chunk can finish a request and start the next, which must be admitted on its own.
   */
  private admittedAt = -1;
  /** What this connection holds in the process's budget. */
  private charged = 0;
  private readonly waiter: BudgetWaiter = {
    retry: () => {
      this.flowControl();
      return !this.waitingForBudget;
    },
  };
  private waitingForBudget = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly options: ConnectionOptions,
    private readonly hooks: ConnectionHooks,
    /** Shared by the process's connections: bytes held for clients, requests and replies. */
    private readonly budget: ByteBudget,
  ) {
    this.framer = new RequestFramer(options.maxRequestBytes);
    socket.setNoDelay(true);
    this.idleTimer = setTimeout(() => this.onIdle(), options.idleTimeoutMs).unref();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    // Resets and broken pipes only end this connection; 'close' follows.
    socket.on('error', () => undefined);
    socket.on('close', () => this.onClose());
    if (options.framing === 'bare') this.startRequestTimer();
  }

  /** Shutdown: take no new requests, answer what was received, then close. */
  stopAccepting(): void {
    this.accepting = false;
    this.clearTimers();
    this.finishIfDone();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Nothing received yet (not even a blank line): the first to go at the connection limit. */
  get silent(): boolean {
    return !this.sawData;
  }

  /** No request (or framing error) taken yet: the next to go at the connection limit. */
  get waitingForFirstRequest(): boolean {
    return !this.sentRequest;
  }

  /** Closes a connection to make room for another: an error reply, then close soon. */
  evict(problem: Problem): void {
    if (this.closed) return;
    this.accepting = false;
    this.queue.length = 0;
    this.clearTimers();
    this.socket.resume();
    this.socket.end(frameReply(this.hooks.renderError(problem), this.options.framing));
    this.closeTimer ??= setTimeout(() => this.socket.destroy(), CLOSE_AFTER_REPLY_MS).unref();
    this.flowControl();
  }

  private progress(): void {
    this.idleTimer.refresh();
  }

  private onData(chunk: Buffer): void {
    if (!this.accepting) return;
    this.sawData = true;
    const events = this.framer.push(chunk);
    this.framedCount += events.length;
    // Blank lines between requests are not progress: a client that sends only those is idle.
    if (events.length > 0 || this.framer.hasPartialRequest()) this.progress();
    // A finished request stops its deadline; a following partial one starts its own.
    if (events.length > 0) this.stopRequestTimer();
    this.enqueue(events);
    this.updateTimers();
  }

  /**
   * Reads only what memory allows. What this connection holds (requests taken and not yet
   * answered, the request being received, replies not yet sent) is charged to the process's
   * budget. A request's whole declared length is charged before its body is read (admission),
   * so a body once started can always finish: half-received requests cannot take the budget
   * and wait for each other forever. Reading stops while the connection holds a full request's
   * worth of unanswered requests, while the process has no room (the connection then waits
   * its turn), while 64 requests wait, or while replies are not being read.
   */
  private flowControl(): void {
    if (this.closed) return;
    if (!this.accepting) {
      // Nothing more will be taken (and what arrives is discarded): only the replies count.
      this.admittedAt = -1;
      this.setWaitingForBudget(false);
      this.charge(this.unansweredBytes() + this.socket.writableLength);
      return;
    }
    const limit = this.options.maxRequestBytes;
    const unanswered = this.unansweredBytes();
    const output = this.socket.writableLength;
    const held = this.framer.heldBytes();
    const declared = this.framer.declaredLength();
    let admitted = declared !== null && this.admittedAt === this.framedCount;
    let ownLimit = this.queue.length >= this.options.maxQueuedRequests || this.socket.writableNeedDrain;
    let budgetLimit = false;
    if (declared === null) {
      // Between requests: the next chunk may carry whole requests, so take none while full.
      ownLimit ||= unanswered >= limit;
      budgetLimit = !ownLimit && !this.budget.fits(1, this.charged);
    } else if (!admitted) {
      if (unanswered > 0 && unanswered + declared > limit) ownLimit = true;
      else if (this.budget.fits(unanswered + Math.max(declared, held) + output - this.charged, this.charged))
        admitted = true;
      else budgetLimit = true;
    }
    this.admittedAt = admitted ? this.framedCount : -1;
    const receiving = declared !== null && admitted ? Math.max(declared, held) : held;
    this.charge(unanswered + receiving + output);
    this.setWaitingForBudget(budgetLimit);
    if (ownLimit || budgetLimit) this.socket.pause();
    else this.socket.resume();
  }

  private unansweredBytes(): number {
    let bytes = this.inProcessBytes;
    for (const event of this.queue) if (event.type === 'request') bytes += event.body.length;
    return bytes;
  }

  private charge(bytes: number): void {
    const delta = bytes - this.charged;
    this.charged = bytes;
    if (delta !== 0) this.budget.adjust(delta);
  }

  private setWaitingForBudget(waiting: boolean): void {
    this.waitingForBudget = waiting;
    if (waiting) this.budget.wait(this.waiter);
    else this.budget.cancel(this.waiter);
  }

  private onEnd(): void {
    this.clientEnded = true;
    if (this.accepting) {
      const events = this.framer.end(this.hooks.isCompleteDocument);
      this.framedCount += events.length;
      // A bare-mode connection exists for one request: closing without one deserves a reply.
      if (events.length === 0 && this.options.framing === 'bare' && this.sawData) {
        events.push({
          type: 'error',
          problem: detailedProblem('truncated', 'empty request: connection closed before a request arrived'),
        });
      }
      this.enqueue(events);
    }
    this.clearTimers();
    this.finishIfDone();
  }

  private onIdle(): void {
    // Idle with nothing in flight, or idle because the client reads none of its replies (it
    // would hold its requests and replies in memory for as long as it liked).
    const idle = !this.busy && this.queue.length === 0 && !this.framer.hasPartialRequest();
    if (idle || this.socket.writableNeedDrain) this.socket.destroy();
    // Otherwise a request is being received or answered, and has deadlines of its own.
    else this.idleTimer.refresh();
  }

  private onClose(): void {
    this.closed = true;
    this.accepting = false;
    this.queue.length = 0;
    this.inProcessBytes = 0;
    this.budget.cancel(this.waiter);
    this.charge(0);
    this.clearTimers();
    clearTimeout(this.idleTimer);
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.closeTimer = null;
  }

  private enqueue(events: FrameEvent[]): void {
    for (const event of events) {
      if (!this.accepting) break;
      this.queue.push(event);
      this.sentRequest = true;
      // Bare mode answers one request per connection; a framing error ends the stream.
      if (this.options.framing === 'bare' || event.type === 'error') {
        this.accepting = false;
        this.clearTimers();
      }
    }
    this.flowControl();
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const event = this.queue.shift() as FrameEvent;
        if (event.type === 'error') {
          this.queue.length = 0;
          this.write(this.hooks.renderError(event.problem));
          break;
        }
        this.inProcessBytes = event.body.length;
        const reply = await this.hooks.processRequest(event.body);
        this.inProcessBytes = 0;
        if (this.closed) break;
        this.write(reply);
        // A client that does not read its replies gets no more answers until it does:
        // unread replies never pile up in memory.
        if (this.socket.writableNeedDrain) await this.drained();
      }
    } finally {
      this.busy = false;
    }
    this.flowControl();
    this.finishIfDone();
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      // Replies not yet sent are held in the process's budget. While other connections wait
      // for room, a client that has read nothing of its replies for a while gives way: it is
      // the one holding memory (a slow reader still makes progress and is left alone).
      let unsent = this.socket.writableLength;
      let stalledMs = 0;
      const watch = setInterval(() => {
        const now = this.socket.writableLength;
        stalledMs = now < unsent ? 0 : stalledMs + STALL_CHECK_MS;
        unsent = now;
        if (stalledMs >= STALL_UNDER_PRESSURE_MS && this.budget.waitingCount > 0) this.socket.destroy();
      }, STALL_CHECK_MS).unref();
      const done = () => {
        clearInterval(watch);
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  private write(xml: string): void {
    // The callback runs once the reply has left our buffer, which is when reading may resume
    // (and the reply's bytes are no longer held). A 'drain' alone once left reading paused.
    this.socket.write(frameReply(xml, this.options.framing), () => {
      this.progress();
      this.flowControl();
    });
    this.flowControl();
  }

  /** Closes our side once every request taken has been answered and none can follow. */
  private finishIfDone(): void {
    if (this.closed || this.busy || this.queue.length > 0) return;
    if (this.accepting && !this.clientEnded) return;
    this.socket.end();
    // Keep reading (and discarding: onData ignores input now) so the client's FIN is
    // seen and the socket closes; a paused socket would linger, and would not even
    // keep the event loop alive during shutdown.
    this.socket.resume();
    // Once the last reply is in the kernel's hands (closing the socket then still delivers
    // it), the peer gets a moment to close; one that never does is not waited for. A peer
    // that reads nothing never gets that far, and is cut by the idle timer.
    if (this.closeTimer === null) {
      this.closeTimer = setTimeout(() => this.socket.destroy(), this.options.idleTimeoutMs).unref();
      this.socket.once('finish', () => {
        if (this.closeTimer) clearTimeout(this.closeTimer);
        if (!this.closed) this.closeTimer = setTimeout(() => this.socket.destroy(), CLOSE_AFTER_REPLY_MS).unref();
      });
    }
  }

  private updateTimers(): void {
    if (!this.accepting) {
      this.clearTimers();
      return;
    }
    const partial = this.framer.hasPartialRequest();
    // The request deadline runs from the first byte and is never extended (slow-loris). In
    // bare mode it runs from connect until the request is in, whatever arrives meanwhile
    // (blank lines, which the framer drops, must not stop it).
    if (partial || this.options.framing === 'bare') this.startRequestTimer();
    else this.stopRequestTimer();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer =
      this.framer.partialBodyBytes() > 0 ? setTimeout(() => this.onGraceElapsed(), this.options.graceMs) : null;
  }

  private onGraceElapsed(): void {
    this.graceTimer = null;
    const sinceLastCheck = Date.now() - this.lastCompletenessCheck;
    if (sinceLastCheck < MIN_COMPLETENESS_CHECK_INTERVAL_MS) {
      this.graceTimer = setTimeout(() => this.onGraceElapsed(), MIN_COMPLETENESS_CHECK_INTERVAL_MS - sinceLastCheck);
      return;
    }
    this.lastCompletenessCheck = Date.now();
    const request = this.framer.takeCompleteShortBody(this.hooks.isCompleteDocument);
    if (request) {
      this.framedCount++;
      this.stopRequestTimer();
      this.enqueue([request]);
      this.updateTimers();
    }
  }

  private startRequestTimer(): void {
    this.requestTimer ??= setTimeout(() => this.onRequestTimeout(), this.options.requestTimeoutMs);
  }

  private stopRequestTimer(): void {
    if (this.requestTimer) clearTimeout(this.requestTimer);
    this.requestTimer = null;
  }

  private onRequestTimeout(): void {
    this.requestTimer = null;
    if (!this.accepting) return;
    if (this.socket.isPaused()) {
      // We stopped reading (backpressure), so the client is not the one stalling.
      this.startRequestTimer();
      return;
    }
    this.enqueue([
      {
        type: 'error',
        problem: detailedProblem('timeout', `request not received in full within ${this.options.requestTimeoutMs} ms`),
      },
    ]);
  }

  private clearTimers(): void {
    this.stopRequestTimer();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
  }
}
