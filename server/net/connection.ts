/**
 * One client connection: bytes in through the framer, requests answered one at
 * a time in arrival order, replies framed per the configured mode. Knows
 * sockets and timers; knows nothing of XML content or the database.
 */
import type net from 'node:net';
import { RequestFramer, frameReply, type FrameEvent, type ReplyFraming } from '../protocol/framing.js';

export type ConnectionOptions = {
  framing: ReplyFraming;
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
  renderError: (reason: string) => string;
  isCompleteDocument: (body: Buffer) => boolean;
};

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
  private lastCompletenessCheck = 0;
  private sawData = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly options: ConnectionOptions,
    private readonly hooks: ConnectionHooks,
  ) {
    this.framer = new RequestFramer(options.maxRequestBytes);
    socket.setNoDelay(true);
    socket.setTimeout(options.idleTimeoutMs, () => this.onIdle());
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

  private onData(chunk: Buffer): void {
    if (!this.accepting) return;
    this.sawData = true;
    const events = this.framer.push(chunk);
    // A finished request stops its deadline; a following partial one starts its own.
    if (events.length > 0) this.stopRequestTimer();
    this.enqueue(events);
    this.updateTimers();
  }

  private onEnd(): void {
    this.clientEnded = true;
    if (this.accepting) {
      const events = this.framer.end(this.hooks.isCompleteDocument);
      // A bare-mode connection exists for one request: closing without one deserves a reply.
      if (events.length === 0 && this.options.framing === 'bare' && this.sawData) {
        events.push({ type: 'error', reason: 'empty request: connection closed before a request arrived' });
      }
      this.enqueue(events);
    }
    this.clearTimers();
    this.finishIfDone();
  }

  private onIdle(): void {
    if (!this.busy && this.queue.length === 0 && !this.framer.hasPartialRequest()) this.socket.destroy();
  }

  private onClose(): void {
    this.closed = true;
    this.accepting = false;
    this.queue.length = 0;
    this.clearTimers();
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.closeTimer = null;
  }

  private enqueue(events: FrameEvent[]): void {
    for (const event of events) {
      if (!this.accepting) break;
      this.queue.push(event);
      // Bare mode answers one request per connection; a framing error ends the stream.
      if (this.options.framing === 'bare' || event.type === 'error') {
        this.accepting = false;
        this.clearTimers();
      }
    }
    if (this.queue.length >= this.options.maxQueuedRequests) this.socket.pause();
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
          this.write(this.hooks.renderError(event.reason));
          break;
        }
        const reply = await this.hooks.processRequest(event.body);
        if (this.closed) break;
        this.write(reply);
        // A client that does not read its replies gets no more answers until it does:
        // unread replies never pile up in memory.
        if (this.socket.writableNeedDrain) await this.drained();
      }
    } finally {
      this.busy = false;
    }
    this.resumeIfRoom();
    this.finishIfDone();
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  private write(xml: string): void {
    // The callback runs once the reply has left our buffer, which is when reading may resume.
    this.socket.write(frameReply(xml, this.options.framing), () => this.resumeIfRoom());
  }

  private resumeIfRoom(): void {
    if (this.accepting && !this.closed && this.queue.length < this.options.maxQueuedRequests
      && !this.socket.writableNeedDrain) {
      this.socket.resume();
    }
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
    // A peer that never reads or never closes would keep the socket alive; cap how long.
    this.closeTimer ??= setTimeout(() => this.socket.destroy(), this.options.idleTimeoutMs).unref();
  }

  private updateTimers(): void {
    if (!this.accepting || !this.framer.hasPartialRequest()) {
      this.clearTimers();
      return;
    }
    // The request deadline runs from the first byte and is never extended (slow-loris).
    this.startRequestTimer();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = this.framer.partialBodyBytes() > 0
      ? setTimeout(() => this.onGraceElapsed(), this.options.graceMs)
      : null;
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
    this.enqueue([{ type: 'error', reason: `request not received in full within ${this.options.requestTimeoutMs} ms` }]);
  }

  private clearTimers(): void {
    this.stopRequestTimer();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = null;
  }
}
