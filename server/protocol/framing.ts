/**
 * The wire codec, both directions and both reply framings, encode and decode side by side:
 * the server, the clients and the tests all frame and unframe bytes here, and nowhere else.
 *
 * - Requests: "N\n" then exactly N bytes (frameRequest; RequestFramer decodes a stream of
 *   them, tolerating what SPEC tolerates, including a length line sent twice).
 * - Replies: bare, the document alone, one per connection; or length, framed like a request
 *   (frameReply; ReplyDecoder decodes either, or detects which one the server speaks).
 *
 * Pure state machines over bytes, with no sockets or timers: a connection feeds them chunks
 * as they arrive and asks them the questions its timers need answered.
 */

import { detailedProblem, type Problem } from '../errors.js';

/** SPEC's reply framings: 'bare' (the document, then close) or 'length' (framed like a request). */
export type ReplyFraming = 'bare' | 'length';

export type FrameEvent =
  | { type: 'request'; body: Buffer }
  /** Fatal for the connection: reply with this error, then close. */
  | { type: 'error'; problem: Problem };

/** A length line longer than this (after leading blank space) is not a length line. */
const MAX_LENGTH_LINE = 32;

const SPACE = 0x20,
  TAB = 0x09,
  CR = 0x0d,
  LF = 0x0a,
  LESS_THAN = 0x3c;

function isBlank(byte: number): boolean {
  return byte === SPACE || byte === TAB || byte === CR || byte === LF;
}
function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

// ---------------------------------------------------------------------------
// Length lines (both directions)
// ---------------------------------------------------------------------------

type LengthLine =
  /** `blank` leading blank bytes may be dropped meanwhile (blank lines before the number are tolerated). */
  | { kind: 'need-more'; blank: number }
  /** `consumed` counts the blank bytes before the number and the newline after it. */
  | { kind: 'length'; length: number; consumed: number }
  | { kind: 'invalid' }
  | { kind: 'too-long' }
  /** Above `maxBytes`; `declared` is the number as sent, without leading zeros. */
  | { kind: 'too-large'; declared: string };

/**
 * Reads "N\n" at the start of `head`: blank lines and spaces before the number, and spaces,
 * tabs or a CR after it, are tolerated. The outcome never depends on how the bytes were chunked.
 */
function parseLengthLine(head: Buffer, maxBytes: number): LengthLine {
  let start = 0;
  while (start < head.length && isBlank(head[start] as number)) start++;
  const line = head.subarray(start);
  let digits = 0;
  while (digits < line.length && isDigit(line[digits] as number)) digits++;
  // line[0] is not blank, so anything but a digit there can never become a length.
  if (line.length > 0 && digits === 0) return { kind: 'invalid' };
  let end = digits;
  while (end < line.length && (line[end] === SPACE || line[end] === TAB || line[end] === CR)) end++;
  if (end < line.length && line[end] !== LF) return { kind: 'invalid' };
  // Checked whether or not the newline has arrived, so chunking never changes the outcome.
  if (Math.min(end, line.length) > MAX_LENGTH_LINE) return { kind: 'too-long' };
  if (end === line.length) return { kind: 'need-more', blank: start };
  const text = line
    .subarray(0, digits)
    .toString('ascii')
    .replace(/^0+(?=\d)/, '');
  if (text.length > 15 || Number(text) > maxBytes) return { kind: 'too-large', declared: text };
  return { kind: 'length', length: Number(text), consumed: start + end + 1 };
}

/** Chunks kept as they arrive and joined only when needed, so a body that trickles in is copied once. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  joined(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks, this.length)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** Drops the first `bytes` bytes. */
  consume(bytes: number): void {
    const rest = this.joined().subarray(bytes);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
  }

  clear(): void {
    this.chunks = [];
    this.length = 0;
  }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/** Encodes one request: its byte count, "\n", the body. Bodies are sent as given (a Buffer may hold any bytes). */
export function frameRequest(body: string | Buffer): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  return Buffer.concat([Buffer.from(`${bytes.length}\n`, 'ascii'), bytes]);
}

/**
 * SPEC: some clients frame a request twice (`N\nM\n<xml>`, where N counts the inner line
 * too). A body that starts with a line of digits whose value is exactly the number of bytes
 * after that line is such an inner frame, and the line is dropped (one layer only). It cannot
 * be mistaken for a real request: XML never starts with a digit (a document starts with `<`,
 * or blank space before it). Digits whose value does not match are left in place, and the
 * parser calls the body malformed.
 */
export function withoutRepeatedLengthLine(body: Buffer): Buffer {
  let digits = 0;
  while (digits < body.length && digits <= MAX_LENGTH_LINE && isDigit(body[digits] as number)) digits++;
  if (digits === 0) return body;
  // The same tail as a length line: spaces, tabs or a CR may come before the newline.
  let end = digits;
  while (end < body.length && end <= MAX_LENGTH_LINE && (body[end] === SPACE || body[end] === TAB || body[end] === CR))
    end++;
  if (end > MAX_LENGTH_LINE || body[end] !== LF) return body;
  const rest = body.length - (end + 1);
  // Compared as text, so no number of digits can overflow.
  const declared = body
    .subarray(0, digits)
    .toString('ascii')
    .replace(/^0+(?=\d)/, '');
  return declared === String(rest) ? body.subarray(end + 1) : body;
}

const INVALID_LENGTH_LINE = 'invalid length line: expected a decimal byte count';

export class RequestFramer {
  /** Unconsumed bytes. */
  private readonly buffered = new ByteQueue();
  /** Declared body length once its length line has been read. */
  private expectedLength: number | null = null;
  private failed = false;

  constructor(private readonly maxRequestBytes: number) {}

  push(chunk: Buffer): FrameEvent[] {
    if (this.failed || chunk.length === 0) return [];
    this.buffered.push(chunk);
    return this.drain();
  }

  /** True while part of a request (length line or body) is buffered: the stall timer should run. */
  hasPartialRequest(): boolean {
    return !this.failed && (this.expectedLength !== null || this.buffered.length > 0);
  }

  /** The declared length of the request being received; null until its length line is read. */
  declaredLength(): number | null {
    return this.failed ? null : this.expectedLength;
  }

  /** Bytes held, whatever they are (part of a length line, a body, the start of the next request). */
  heldBytes(): number {
    return this.buffered.length;
  }

  /** Bytes of the body received so far (0 when no length line has been read). */
  partialBodyBytes(): number {
    return this.expectedLength === null ? 0 : this.buffered.length;
  }

  /**
   * SPEC: clients overstate N. When nothing more arrives for a grace period, a
   * body that already holds a complete document is processed as it stands.
   */
  takeCompleteShortBody(isCompleteDocument: (body: Buffer) => boolean): FrameEvent | null {
    if (this.failed || this.expectedLength === null || this.buffered.length === 0) return null;
    const body = withoutRepeatedLengthLine(this.buffered.joined());
    if (!isCompleteDocument(body)) return null;
    this.reset();
    return { type: 'request', body };
  }

  /** The client half-closed: whatever is buffered is all there will ever be. */
  end(isCompleteDocument: (body: Buffer) => boolean): FrameEvent[] {
    if (this.failed) return [];
    const short = this.takeCompleteShortBody(isCompleteDocument);
    if (short) return [short];
    if (this.expectedLength !== null) {
      return [
        this.fail(
          detailedProblem(
            'truncated',
            `truncated request: connection closed after ${this.buffered.length} of ${this.expectedLength} bytes`,
          ),
        ),
      ];
    }
    const rest = this.buffered.joined();
    if (rest.some((byte) => !isBlank(byte)))
      return [this.fail(detailedProblem('truncated', 'truncated request: connection closed inside the length line'))];
    this.reset();
    return [];
  }

  private drain(): FrameEvent[] {
    const events: FrameEvent[] = [];
    for (;;) {
      if (this.expectedLength === null) {
        const line = parseLengthLine(this.buffered.joined(), this.maxRequestBytes);
        if (line.kind === 'need-more') {
          // Leading blank lines are tolerated and need not be kept.
          if (line.blank > 0) this.buffered.consume(line.blank);
          break;
        }
        if (line.kind !== 'length') {
          events.push(
            this.fail(
              line.kind === 'invalid'
                ? detailedProblem('bad_length_line', INVALID_LENGTH_LINE)
                : line.kind === 'too-long'
                  ? detailedProblem('bad_length_line', 'invalid length line: too long')
                  : detailedProblem(
                      'too_large',
                      `request of ${line.declared} bytes exceeds the maximum of ${this.maxRequestBytes} bytes`,
                    ),
            ),
          );
          break;
        }
        this.buffered.consume(line.consumed);
        this.expectedLength = line.length;
      }
      if (this.buffered.length < this.expectedLength) break;
      const all = this.buffered.joined();
      events.push({ type: 'request', body: withoutRepeatedLengthLine(all.subarray(0, this.expectedLength)) });
      this.buffered.consume(this.expectedLength);
      this.expectedLength = null;
    }
    return events;
  }

  private reset(): void {
    this.buffered.clear();
    this.expectedLength = null;
  }

  private fail(problem: Problem): FrameEvent {
    this.failed = true;
    this.reset();
    return { type: 'error', problem };
  }
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

/** Encodes one reply: bare is the document alone; length prefixes its byte count, as a request is framed. */
export function frameReply(xml: string, framing: ReplyFraming): Buffer {
  if (framing === 'bare') return Buffer.from(xml, 'utf8');
  const bodyBytes = Buffer.byteLength(xml, 'utf8');
  // One allocation: the prefix and the document written into the same buffer.
  const prefix = `${bodyBytes}\n`;
  const framed = Buffer.allocUnsafe(prefix.length + bodyBytes);
  framed.write(prefix, 0, 'latin1');
  framed.write(xml, prefix.length, 'utf8');
  return framed;
}

/** Why a reply stream could not be decoded; codes are for programs, messages for people. */
export type WireErrorCode =
  /** The server speaks the other reply framing (`serverFraming` says which). */
  | 'wrong-framing'
  /** A length line that is not a decimal byte count. */
  | 'bad-length-line'
  /** Neither a length line nor an XML document where a reply should start. */
  | 'not-a-reply'
  | 'reply-too-large'
  /** The server closed the connection in the middle of a reply. */
  | 'truncated'
  /** The server closed a one-request (bare) connection without replying. */
  | 'no-reply';

export class WireError extends Error {
  override name = 'WireError';

  constructor(
    readonly code: WireErrorCode,
    message: string,
    readonly serverFraming: ReplyFraming | null = null,
  ) {
    super(message);
  }
}

export type ReplyEvent = { type: 'reply'; xml: string } | { type: 'error'; error: WireError };

/**
 * Replies are at most 50,000 elements (a few MB, docs/protocol.md); a larger declared length
 * is a broken stream, not something to buffer.
 */
export const DEFAULT_MAX_REPLY_BYTES = 256 * 1024 * 1024;

function preview(bytes: Buffer): string {
  return JSON.stringify(bytes.subarray(0, 40).toString('latin1'));
}

/**
 * Decodes the replies of one connection. Given 'bare' or 'length' it insists on that framing
 * and reports the other at once (a bare reply starts with `<`, a length line with a digit, so
 * the first byte tells); given 'auto' it takes whichever the first reply shows. Every bad
 * byte is an error event, after which the decoder is dead: it never waits on a length it
 * could not read.
 */
export class ReplyDecoder {
  private readonly buffered = new ByteQueue();
  private expectedLength: number | null = null;
  private detected: ReplyFraming | null;
  private failed = false;
  /** Whether the first non-blank byte (which tells the framing) has been checked. */
  private firstByteChecked = false;

  constructor(
    private readonly expected: ReplyFraming | 'auto',
    private readonly maxReplyBytes = DEFAULT_MAX_REPLY_BYTES,
  ) {
    this.detected = expected === 'auto' ? null : expected;
  }

  /** The framing the server speaks, once known (at once when one was insisted on). */
  get framing(): ReplyFraming | null {
    return this.detected;
  }

  /** True while part of a reply is buffered. */
  hasPartialReply(): boolean {
    return !this.failed && (this.expectedLength !== null || this.buffered.length > 0);
  }

  push(chunk: Buffer): ReplyEvent[] {
    if (this.failed || chunk.length === 0) return [];
    this.buffered.push(chunk);
    if (!this.firstByteChecked) {
      const problem = this.checkFirstByte();
      if (problem) return [this.fail(problem)];
    }
    if (this.detected !== 'length') {
      if (this.buffered.length > this.maxReplyBytes) {
        return [
          this.fail(
            new WireError('reply-too-large', `reply exceeds the client's maximum of ${this.maxReplyBytes} bytes`),
          ),
        ];
      }
      // A bare reply is everything until the server closes the connection.
      return [];
    }
    return this.drainLength();
  }

  /** The server closed the connection: a bare reply is complete; a partial length frame is not. */
  end(): ReplyEvent[] {
    if (this.failed) return [];
    if (this.detected === 'length') {
      if (this.expectedLength === null && this.buffered.joined().every((byte) => isBlank(byte))) return [];
      const got =
        this.expectedLength === null
          ? 'inside a length line'
          : `after ${this.buffered.length} of ${this.expectedLength} bytes`;
      return [
        this.fail(new WireError('truncated', `the server closed the connection in the middle of a reply (${got})`)),
      ];
    }
    if (this.buffered.joined().every((byte) => isBlank(byte))) {
      return [this.fail(new WireError('no-reply', 'the server closed the connection without replying'))];
    }
    const xml = this.buffered.joined().toString('utf8');
    this.buffered.clear();
    // One reply per connection: anything after it would be a protocol error.
    this.failed = true;
    return [{ type: 'reply', xml }];
  }

  /** The first non-blank byte says which framing the server speaks. */
  private checkFirstByte(): WireError | null {
    const head = this.buffered.joined();
    const first = head.find((byte) => !isBlank(byte));
    if (first === undefined) return null;
    this.firstByteChecked = true;
    const speaks: ReplyFraming | null = first === LESS_THAN ? 'bare' : isDigit(first) ? 'length' : null;
    if (speaks === null) {
      return new WireError(
        'not-a-reply',
        `the reply is neither a length line nor an XML document: it starts ${preview(head)}`,
      );
    }
    if (this.detected === null) this.detected = speaks;
    if (speaks !== this.detected) {
      const what =
        speaks === 'bare' ? 'an XML document without a length line' : 'a length line before the XML document';
      return new WireError(
        'wrong-framing',
        `the server speaks ${speaks} reply framing, not ${this.expected} (its reply starts with ${what})`,
        speaks,
      );
    }
    return null;
  }

  private drainLength(): ReplyEvent[] {
    const events: ReplyEvent[] = [];
    for (;;) {
      if (this.expectedLength === null) {
        const head = this.buffered.joined();
        const line = parseLengthLine(head, this.maxReplyBytes);
        if (line.kind === 'need-more') {
          if (line.blank > 0) this.buffered.consume(line.blank);
          break;
        }
        if (line.kind === 'too-large') {
          events.push(
            this.fail(
              new WireError(
                'reply-too-large',
                `reply of ${line.declared} bytes exceeds the client's maximum of ${this.maxReplyBytes} bytes`,
              ),
            ),
          );
          break;
        }
        if (line.kind !== 'length') {
          events.push(
            this.fail(
              new WireError(
                'bad-length-line',
                `invalid reply length line: expected a decimal byte count, got ${preview(head)}`,
              ),
            ),
          );
          break;
        }
        this.buffered.consume(line.consumed);
        this.expectedLength = line.length;
      }
      if (this.buffered.length < this.expectedLength) break;
      events.push({ type: 'reply', xml: this.buffered.joined().subarray(0, this.expectedLength).toString('utf8') });
      this.buffered.consume(this.expectedLength);
      this.expectedLength = null;
    }
    return events;
  }

  private fail(error: WireError): ReplyEvent {
    this.failed = true;
    this.buffered.clear();
    this.expectedLength = null;
    return { type: 'error', error };
  }
}
