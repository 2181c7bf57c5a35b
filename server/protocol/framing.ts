/**
 * Request framing: "N\n" then exactly N bytes (a second length line at the start of
 * the body is tolerated, see withoutRepeatedLengthLine). A pure state machine over the
 * byte stream, with no sockets or timers: the connection feeds it chunks as they
 * arrive and asks it the questions its timers need answered.
 */

export type FrameEvent =
  | { type: 'request'; body: Buffer }
  /** Fatal for the connection: reply with this reason, then close. */
  | { type: 'error'; reason: string };

/** A length line longer than this (after leading blank space) is not a length line. */
const MAX_LENGTH_LINE = 32;

const SPACE = 0x20, TAB = 0x09, CR = 0x0d, LF = 0x0a;

function isBlank(byte: number): boolean {
  return byte === SPACE || byte === TAB || byte === CR || byte === LF;
}
function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
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
  while (end < body.length && end <= MAX_LENGTH_LINE && (body[end] === SPACE || body[end] === TAB || body[end] === CR)) end++;
  if (end > MAX_LENGTH_LINE || body[end] !== LF) return body;
  const rest = body.length - (end + 1);
  // Compared as text, so no number of digits can overflow.
  const declared = body.subarray(0, digits).toString('ascii').replace(/^0+(?=\d)/, '');
  return declared === String(rest) ? body.subarray(end + 1) : body;
}

type LengthLine = { kind: 'need-more' } | { kind: 'length'; length: number; consumed: number } | { kind: 'error'; reason: string };

export class RequestFramer {
  /** Unconsumed bytes, kept as chunks so a body that trickles in is copied once. */
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  /** Declared body length once its length line has been read. */
  private expectedLength: number | null = null;
  private failed = false;

  constructor(private readonly maxRequestBytes: number) {}

  push(chunk: Buffer): FrameEvent[] {
    if (this.failed || chunk.length === 0) return [];
    this.chunks.push(chunk);
    this.bufferedBytes += chunk.length;
    return this.drain();
  }

  /** True while part of a request (length line or body) is buffered: the stall timer should run. */
  hasPartialRequest(): boolean {
    return !this.failed && (this.expectedLength !== null || this.bufferedBytes > 0);
  }

  /** Bytes of the body received so far (0 when no length line has been read). */
  partialBodyBytes(): number {
    return this.expectedLength === null ? 0 : this.bufferedBytes;
  }

  /**
   * SPEC: clients overstate N. When nothing more arrives for a grace period, a
   * body that already holds a complete document is processed as it stands.
   */
  takeCompleteShortBody(isCompleteDocument: (body: Buffer) => boolean): FrameEvent | null {
    if (this.failed || this.expectedLength === null || this.bufferedBytes === 0) return null;
    const body = withoutRepeatedLengthLine(this.joined());
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
      return [this.fail(`truncated request: connection closed after ${this.bufferedBytes} of ${this.expectedLength} bytes`)];
    }
    const rest = this.joined();
    if (rest.some((byte) => !isBlank(byte))) return [this.fail('truncated request: connection closed inside the length line')];
    this.reset();
    return [];
  }

  private drain(): FrameEvent[] {
    const events: FrameEvent[] = [];
    for (;;) {
      if (this.expectedLength === null) {
        const line = this.readLengthLine();
        if (line.kind === 'need-more') break;
        if (line.kind === 'error') {
          events.push(this.fail(line.reason));
          break;
        }
        this.consume(line.consumed);
        this.expectedLength = line.length;
      }
      if (this.bufferedBytes < this.expectedLength) break;
      const all = this.joined();
      events.push({ type: 'request', body: withoutRepeatedLengthLine(all.subarray(0, this.expectedLength)) });
      const rest = all.subarray(this.expectedLength);
      this.reset();
      if (rest.length > 0) {
        this.chunks = [rest];
        this.bufferedBytes = rest.length;
      }
    }
    return events;
  }

  private readLengthLine(): LengthLine {
    const head = this.joined();
    let start = 0;
    while (start < head.length && isBlank(head[start] as number)) start++;
    // Leading blank lines are tolerated and need not be kept.
    if (start > 0) this.consume(start);
    const line = head.subarray(start);
    let digits = 0;
    while (digits < line.length && isDigit(line[digits] as number)) digits++;
    // line[0] is not blank, so anything but a digit there can never become a length.
    if (line.length > 0 && digits === 0) return { kind: 'error', reason: 'invalid length line: expected a decimal byte count' };
    let end = digits;
    while (end < line.length && (line[end] === SPACE || line[end] === TAB || line[end] === CR)) end++;
    if (end < line.length && line[end] !== LF) {
      return { kind: 'error', reason: 'invalid length line: expected a decimal byte count' };
    }
    // Checked whether or not the newline has arrived, so chunking never changes the outcome.
    if (Math.min(end, line.length) > MAX_LENGTH_LINE) return { kind: 'error', reason: 'invalid length line: too long' };
    if (end === line.length) return { kind: 'need-more' };
    const text = line.subarray(0, digits).toString('ascii').replace(/^0+(?=\d)/, '');
    if (text.length > 15 || Number(text) > this.maxRequestBytes) {
      return { kind: 'error', reason: `request of ${text} bytes exceeds the maximum of ${this.maxRequestBytes} bytes` };
    }
    return { kind: 'length', length: Number(text), consumed: end + 1 };
  }

  private joined(): Buffer {
    if (this.chunks.length !== 1) {
      this.chunks = [Buffer.concat(this.chunks, this.bufferedBytes)];
    }
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  private consume(bytes: number): void {
    const rest = this.joined().subarray(bytes);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.bufferedBytes = rest.length;
  }

  private reset(): void {
    this.chunks = [];
    this.bufferedBytes = 0;
    this.expectedLength = null;
  }

  private fail(reason: string): FrameEvent {
    this.failed = true;
    this.reset();
    return { type: 'error', reason };
  }
}
