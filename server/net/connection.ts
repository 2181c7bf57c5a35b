/**
 * One client connection: bytes in through the framer, requests answered one at
 * a time in arrival order, replies framed per the configured mode. Knows
 * sockets and timers; knows nothing of XML content or the database.
 */
import type net from 'node:net';
import { RequestFramer, type FrameEvent } from '../protocol/framing.js';
import { frameReply, type ReplyFraming } from '../protocol/render-reply.js';

export type ConnectionOptions = {
  framing: ReplyFraming;
  maxRequestBytes: number;
  /** A request must arrive whole within this long of its first byte (slow clients are cut off). */
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
    const events = this.framer.push(chunk);
    // A finished request stops its deadline; a following partial one starts its own.
    if (events.length > 0 && this.requestTimer) {
      clearTimeout(this.requestTimer);
      this.requestTimer = null;
    }
    this.enqueue(events);
    this.updateTimers();
  }

  private onEnd(): void {
    this.clientEnded = true;
    if (this.accepting) this.enqueue(this.framer.end(this.hooks.isCompleteDocument));
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
  }

  private enqueue(events: FrameEvent[]): void {
    for (const event of events) {
      if (!this.accepting) break;
      this.queue.push(event);
      // Bare mode answers one request per connection; a framing error ends the stream.
      if (this.options.framing === 'bare' || event.type === 'error') {
        this.accepting = false;
        this.socket.pause();
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
      }
    } finally {
      this.busy = false;
    }
    this.resumeIfRoom();
    this.finishIfDone();
  }

  private write(xml: string): void {
    const flushed = this.socket.write(frameReply(xml, this.options.framing));
    // A client that does not read its replies stops being read from: memory stays bounded.
    if (!flushed) {
      this.socket.pause();
      this.socket.once('drain', () => this.resumeIfRoom());
    }
  }

  private resumeIfRoom(): void {
    if (this.accepting && !this.closed && this.queue.length < this.options.maxQueuedRequests
      && this.socket.writableLength === 0) {
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
    // A peer that never reads would keep a half-closed socket alive; cap how long.
    setTimeout(() => this.socket.destroy(), this.options.idleTimeoutMs).unref();
  }

  private updateTimers(): void {
    if (!this.accepting || !this.framer.hasPartialRequest()) {
      this.clearTimers();
      return;
    }
    // The request deadline runs from the first byte and is never extended (slow-loris).
    this.requestTimer ??= setTimeout(() => this.onRequestTimeout(), this.options.requestTimeoutMs);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = this.framer.partialBodyBytes() > 0
      ? setTimeout(() => this.onGraceElapsed(), this.options.graceMs)
      : null;
  }

  private onGraceElapsed(): void {
    this.graceTimer = null;
    const request = this.framer.takeCompleteShortBody(this.hooks.isCompleteDocument);
    if (request) {
      this.enqueue([request]);
      this.updateTimers();
    }
  }

  private onRequestTimeout(): void {
    this.requestTimer = null;
    if (!this.accepting) return;
    if (this.socket.isPaused()) {
      // We stopped reading (backpressure), so the client is not the one stalling.
      this.requestTimer = setTimeout(() => this.onRequestTimeout(), this.options.requestTimeoutMs);
      return;
    }
    this.enqueue([{ type: 'error', reason: `request not received in full within ${this.options.requestTimeoutMs} ms` }]);
  }

  private clearTimers(): void {
    if (this.requestTimer) clearTimeout(this.requestTimer);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.requestTimer = null;
    this.graceTimer = null;
  }
}
