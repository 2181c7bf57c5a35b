/**
 * Property-based fuzzing (fast-check) of the pure protocol layer:
 *  - the framing decoder over arbitrary bytes in arbitrary chunks;
 *  - the request parser over arbitrary strings, arbitrary bytes, and XML built from a
 *    grammar of our own elements and attributes with valid and invalid values;
 *  - the reply renderer over arbitrary attribute and text strings.
 * Seeded: FUZZ_SEED=<n> reproduces (or varies) a run; failures print their seed and path.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import {
  ReplyDecoder,
  RequestFramer,
  frameReply,
  type FrameEvent,
  type ReplyFraming,
} from '../../server/protocol/framing.js';
import { isCompleteDocument, parseRequest, type RequestParseError } from '../../server/protocol/parse-request.js';
import { renderResults } from '../../server/protocol/render-reply.js';
import { referenceRenderResults } from '../support/reference-render.js';
import type { ReplyElement } from '../../server/protocol/replies.js';
import type { CreateItem, Request } from '../../server/protocol/requests.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_260_611);

/** fc.assert with this file's seed (offset per property so they do not share a stream). */
function check<T>(property: fc.IProperty<T>, offset: number, numRuns: number): void {
  fc.assert(property, { seed: SEED + offset, numRuns, endOnFailure: false });
}

// ---------------------------------------------------------------------------
// (a) framing
// ---------------------------------------------------------------------------

type Shown = { type: 'request'; body: string } | { type: 'error'; reason: string };

type FramerRun = { events: Shown[]; given: number; taken: number };

const ascii = (text: string): Uint8Array => Buffer.from(text, 'latin1');

/** Feeds chunks (then optionally end()), asserting the per-push invariants; returns what came out. */
function runFramer(maxRequestBytes: number, chunks: Uint8Array[], callEnd: boolean): FramerRun {
  const framer = new RequestFramer(maxRequestBytes);
  const events: Shown[] = [];
  let given = 0;
  let taken = 0;
  let failed = false;
  const take = (out: FrameEvent[]): void => {
    for (const event of out) {
      expect(failed, `no event after an error: ${JSON.stringify(event)}`).to.equal(false);
      if (event.type === 'error') {
        failed = true;
        expect(event.problem.message).to.be.a('string').and.not.equal('');
        events.push({ type: 'error', reason: event.problem.message });
      } else {
        expect(Buffer.isBuffer(event.body)).to.equal(true);
        expect(event.body.length, 'a body never exceeds the maximum').to.be.at.most(maxRequestBytes);
        taken += event.body.length;
        events.push({ type: 'request', body: event.body.toString('hex') });
      }
    }
    expect(taken, 'never returns more bytes than it was given').to.be.at.most(given);
    // The timer questions must be answerable at any point.
    expect(framer.hasPartialRequest()).to.be.a('boolean');
    expect(framer.partialBodyBytes()).to.be.at.least(0).and.at.most(given);
  };
  for (const chunk of chunks) {
    given += chunk.length;
    take(framer.push(Buffer.from(chunk)));
  }
  if (callEnd) take(framer.end(isCompleteDocument));
  if (failed) {
    // After an error the framer is dead: more bytes, a half-close, a grace check give nothing.
    expect(framer.push(Buffer.from('5\n<a/>\n3\nabc'))).to.deep.equal([]);
    expect(framer.end(isCompleteDocument)).to.deep.equal([]);
    expect(framer.takeCompleteShortBody(() => true)).to.equal(null);
    expect(framer.hasPartialRequest()).to.equal(false);
  }
  return { events, given, taken };
}

/** Splits bytes at arbitrary cut points (empty chunks included: they must be harmless). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => (bytes.length === 0 ? 0 : cut % (bytes.length + 1))))].sort(
    (a, b) => a - b,
  );
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

const concatBytes = (parts: Uint8Array[]): Uint8Array => Buffer.concat(parts.map((part) => Buffer.from(part)));

/** One correctly framed request, with the length-line variations the protocol tolerates. */
const wellFramed = fc
  .tuple(
    fc.constantFrom('', ' ', '\n', '\r\n', '\n\n  \t', '000'),
    fc.uint8Array({ maxLength: 48 }),
    fc.constantFrom('\n', '\r\n', ' \n', '\t\r\n'),
  )
  .map(([before, body, newline]) => {
    const prefix = before === '000' ? `000${body.length}` : `${before}${body.length}`;
    return { bytes: concatBytes([ascii(prefix + newline), body]), body };
  });

/**
 * SPEC: a body that starts with a line of digits whose value is exactly the number of bytes
 * after it is a request framed twice; the request is what follows that line. Written here
 * from the SPEC sentence, apart from the server's code, as the property's oracle.
 */
function requestInBody(body: Uint8Array): Uint8Array {
  const match = /^([0-9]{1,32})[ \t\r]*\n/.exec(Buffer.from(body).toString('latin1'));
  if (!match || match[0].length > 33) return body;
  return BigInt(match[1] as string) === BigInt(body.length - match[0].length) ? body.subarray(match[0].length) : body;
}

/** A request framed twice, as some clients send it (`N\nM\n<body>`); `body` is the outer body. */
const doublyFramed = wellFramed.map((inner) => ({
  bytes: concatBytes([ascii(`${inner.bytes.length}\n`), inner.bytes]),
  body: inner.bytes,
}));

/** Byte soup biased towards what the length-line parser looks at. */
const framingNoise = fc.oneof(
  fc.uint8Array({ maxLength: 12 }),
  fc
    .string({
      unit: fc.constantFrom('0', '1', '5', '9', ' ', '\t', '\r', '\n', '-', '+', 'x', '<', '\u0000'),
      maxLength: 40,
    })
    .map(ascii),
  fc.integer({ min: 0, max: 2 ** 40 }).map((n) => ascii(`${n}\n`)),
);

const framingStream = fc.oneof(
  fc.uint8Array({ maxLength: 400 }),
  fc
    .array(
      fc.oneof(
        wellFramed.map((frame) => frame.bytes),
        doublyFramed.map((frame) => frame.bytes),
        framingNoise,
      ),
      { maxLength: 10 },
    )
    .map(concatBytes),
);

const maxRequestBytes = fc.oneof(fc.constant(1024 * 1024), fc.integer({ min: 0, max: 64 }));

describe('fuzz: RequestFramer', function () {
  this.timeout(30_000);

  it('never throws, never returns more bytes than given, and nothing follows an error', () => {
    check(
      fc.property(
        maxRequestBytes,
        framingStream,
        fc.array(fc.nat(), { maxLength: 24 }),
        fc.boolean(),
        (max, bytes, cuts, callEnd) => {
          runFramer(max, split(bytes, cuts), callEnd);
        },
      ),
      1,
      1500,
    );
  });

  it('the outcome does not depend on the chunking (whole, arbitrary chunks, byte by byte)', () => {
    check(
      fc.property(
        maxRequestBytes,
        framingStream,
        fc.array(fc.nat(), { maxLength: 24 }),
        fc.boolean(),
        (max, bytes, cuts, callEnd) => {
          const whole = runFramer(max, [bytes], callEnd);
          expect(runFramer(max, split(bytes, cuts), callEnd).events).to.deep.equal(whole.events);
          expect(
            runFramer(
              max,
              [...bytes].map((byte) => Uint8Array.of(byte)),
              callEnd,
            ).events,
          ).to.deep.equal(whole.events);
        },
      ),
      2,
      700,
    );
  });

  it('a stream of well-framed requests (some framed twice) yields exactly their requests, in order, however it is chunked', () => {
    check(
      fc.property(
        fc.array(fc.oneof(wellFramed, doublyFramed), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 24 }),
        (frames, cuts) => {
          const stream = concatBytes(frames.map((frame) => frame.bytes));
          const { events } = runFramer(1024 * 1024, split(stream, cuts), true);
          expect(events).to.deep.equal(
            frames.map((frame) => ({ type: 'request', body: Buffer.from(requestInBody(frame.body)).toString('hex') })),
          );
        },
      ),
      3,
      700,
    );
  });
});

describe('fuzz: ReplyDecoder', function () {
  this.timeout(30_000);

  /** Everything the decoder says about a stream, then about the close; asserts nothing follows an error. */
  function decodeAll(mode: ReplyFraming | 'auto', chunks: Uint8Array[]): string[] {
    const decoder = new ReplyDecoder(mode, 4096);
    const shown: string[] = [];
    for (const events of [...chunks.map((chunk) => decoder.push(Buffer.from(chunk))), decoder.end()]) {
      for (const event of events) {
        expect(
          shown.some((line) => line.startsWith('error')),
          'nothing after an error',
        ).to.equal(false);
        shown.push(event.type === 'reply' ? `reply ${event.xml}` : `error ${event.error.code}`);
      }
    }
    return shown;
  }

  const replyStream = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    fc
      .array(
        fc.oneof(
          fc.string({ maxLength: 30 }).map((xml) => frameReply(`<r>${xml}</r>`, 'length')),
          framingNoise,
        ),
        { maxLength: 6 },
      )
      .map(concatBytes),
  );

  it('never throws, ends every stream in replies or one error, and the outcome does not depend on the chunking', () => {
    check(
      fc.property(
        fc.constantFrom('bare', 'length', 'auto') as fc.Arbitrary<ReplyFraming | 'auto'>,
        replyStream,
        fc.array(fc.nat(), { maxLength: 24 }),
        (mode, bytes, cuts) => {
          const whole = decodeAll(mode, [bytes]);
          expect(decodeAll(mode, split(bytes, cuts))).to.deep.equal(whole);
          expect(
            decodeAll(
              mode,
              [...bytes].map((byte) => Uint8Array.of(byte)),
            ),
          ).to.deep.equal(whole);
        },
      ),
      4,
      700,
    );
  });
});

// ---------------------------------------------------------------------------
// (b) request parsing
// ---------------------------------------------------------------------------

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/** docs/protocol.md: a plain decimal, at most 24 significant integer digits and 16 places. */
function plainDecimal(text: string): { negative: boolean; zero: boolean } | null {
  if (text.length === 0 || text.length > 64) return null;
  const match = DECIMAL.exec(text);
  if (!match) return null;
  const integer = (match[2] ?? '').replace(/^0+/, '');
  const fraction = (match[3] ?? '').replace(/0+$/, '');
  if (integer.length > 24 || fraction.length > 16) return null;
  const zero = integer.length === 0 && fraction.length === 0;
  return { negative: match[1] === '-' && !zero, zero };
}

const RULES = {
  accountId: (value: string): boolean => /^[0-9]{1,64}$/.test(value),
  sym: (value: string): boolean => /^[A-Za-z0-9]{1,64}$/.test(value),
  balance: (value: string): boolean => plainDecimal(value)?.negative === false,
  shares: (value: string): boolean => {
    const d = plainDecimal(value.trim());
    return d !== null && !d.negative && !d.zero;
  },
  amount: (value: string): boolean => {
    const d = plainDecimal(value);
    return d !== null && !d.zero;
  },
  limit: (value: string): boolean => {
    const d = plainDecimal(value);
    return d !== null && !d.negative && !d.zero;
  },
};

/** Any value a hostile client might put in an attribute: valid-looking or not. */
const anyValue = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '',
      '0',
      '-0',
      '+5',
      '1e3',
      '1E-2',
      '0x10',
      '.5',
      '5.',
      '--5',
      '1,5',
      ' 5',
      '5 ',
      'NaN',
      'Infinity',
      '١٢٣',
      '１２３',
      '€',
      'A B',
      'A-B',
      '007',
      '9'.repeat(25),
      '9'.repeat(65),
      `0.${'1'.repeat(17)}`,
      `0.${'1'.repeat(40)}`,
      '-1',
      '-0.0',
      '1.0000000000000000000',
    ),
  },
  { weight: 3, arbitrary: fc.stringMatching(/^-?[0-9]{1,6}(\.[0-9]{1,5})?$/) },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9]{1,8}$/) },
  {
    weight: 2,
    arbitrary: fc.string({
      unit: fc.constantFrom(
        '0',
        '1',
        '9',
        '.',
        '-',
        '+',
        'e',
        'A',
        'z',
        ' ',
        '\t',
        '\n',
        '<',
        '>',
        '&',
        '"',
        "'",
        '١',
        'é',
        '😀',
      ),
      maxLength: 12,
    }),
  },
);

/** Escapes for a double- or single-quoted attribute; whitespace as character references so it survives normalization. */
function escapeAttribute(value: string, quote: '"' | "'"): string {
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(quote === '"' ? /"/g : /'/g, quote === '"' ? '&quot;' : '&apos;')
    .replace(/\t/g, '&#9;')
    .replace(/\n/g, '&#10;')
    .replace(/\r/g, '&#13;');
}

function escapeText(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#13;');
}

type Attr = [name: string, value: string];

/** A generated element: its own attributes (undefined = absent) and how it is expected to parse. */
type GenAccount = { kind: 'account'; id?: string; balance?: string; extra: boolean };
type GenHolding = { id?: string; shares: string; extra: boolean };
type GenSymbol = { kind: 'symbol'; sym?: string; holdings: GenHolding[]; extra: boolean };
type GenUnknown = { kind: 'unknown'; name: string };
type GenOrder = { kind: 'order'; sym?: string; amount?: string; limit?: string; extra: boolean };
type GenLookup = { kind: 'query' | 'cancel'; id?: string; extra: boolean };
type GenCreate = { root: 'create'; children: Array<GenAccount | GenSymbol | GenUnknown> };
type GenTransactions = { root: 'transactions'; id?: string; children: Array<GenOrder | GenLookup | GenUnknown> };
type GenDocument = (GenCreate | GenTransactions) & {
  declaration: boolean;
  quote: '"' | "'";
  gap: string;
  reverse: boolean;
};

const maybe = <T>(arbitrary: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.option(arbitrary, { nil: undefined, freq: 6 });
const unknownElement = fc
  .constantFrom('bogus', 'buy', 'sell', 'x:order', 'ORDER', 'transactions', 'create')
  .map((name): GenUnknown => ({ kind: 'unknown', name }));

/** An unexpected extra attribute, about one time in six. */
const extraAttribute = fc.integer({ min: 0, max: 5 }).map((n) => n === 0);

const genAccount = fc
  .record({ id: maybe(anyValue), balance: maybe(anyValue), extra: extraAttribute })
  .map((fields): GenAccount => ({ kind: 'account', ...fields }));
const genSymbol = fc
  .record({
    sym: maybe(anyValue),
    holdings: fc.array(fc.record({ id: maybe(anyValue), shares: anyValue, extra: extraAttribute }), { maxLength: 4 }),
    extra: extraAttribute,
  })
  .map((fields): GenSymbol => ({ kind: 'symbol', ...fields }));
const genOrder = fc
  .record({ sym: maybe(anyValue), amount: maybe(anyValue), limit: maybe(anyValue), extra: extraAttribute })
  .map((fields): GenOrder => ({ kind: 'order', ...fields }));
const genLookup = fc.record({
  kind: fc.constantFrom('query' as const, 'cancel' as const),
  id: maybe(fc.oneof(anyValue, fc.nat().map(String))),
  extra: extraAttribute,
});

const layout = fc.record({
  declaration: fc.boolean(),
  quote: fc.constantFrom('"' as const, "'" as const),
  gap: fc.constantFrom('', ' ', '\n', '\r\n  ', '\t'),
  reverse: fc.boolean(),
});

const genDocument: fc.Arbitrary<GenDocument> = fc.oneof(
  fc
    .tuple(
      fc.array(
        fc.oneof(
          { weight: 4, arbitrary: genAccount },
          { weight: 4, arbitrary: genSymbol },
          { weight: 1, arbitrary: unknownElement },
        ),
        { maxLength: 8 },
      ),
      layout,
    )
    .map(([children, format]): GenDocument => ({ root: 'create', children, ...format })),
  fc
    .tuple(
      maybe(anyValue),
      fc.array(
        fc.oneof(
          { weight: 4, arbitrary: genOrder },
          { weight: 3, arbitrary: genLookup },
          { weight: 1, arbitrary: unknownElement },
        ),
        { maxLength: 8 },
      ),
      layout,
    )
    .map(([id, children, format]): GenDocument => ({ root: 'transactions', id, children, ...format })),
);

function attributes(document: GenDocument, pairs: Array<[string, string | undefined]>, extra: boolean): string {
  const present = pairs.filter((pair): pair is Attr => pair[1] !== undefined);
  if (extra) present.push(['admin', 'yes']);
  if (document.reverse) present.reverse();
  return present
    .map(([name, value]) => ` ${name}=${document.quote}${escapeAttribute(value, document.quote)}${document.quote}`)
    .join('');
}

function renderDocument(document: GenDocument): string {
  const g = document.gap;
  const parts: string[] = [];
  if (document.declaration) parts.push(`<?xml version="1.0" encoding="UTF-8"?>${g || '\n'}`);
  if (document.root === 'create') {
    parts.push(`<create>`);
    for (const child of document.children) {
      if (child.kind === 'account')
        parts.push(
          `${g}<account${attributes(
            document,
            [
              ['id', child.id],
              ['balance', child.balance],
            ],
            child.extra,
          )}/>`,
        );
      else if (child.kind === 'symbol') {
        const holdings = child.holdings
          .map(
            (holding) =>
              `${g}<account${attributes(document, [['id', holding.id]], holding.extra)}>${escapeText(holding.shares)}</account>`,
          )
          .join('');
        parts.push(`${g}<symbol${attributes(document, [['sym', child.sym]], child.extra)}>${holdings}${g}</symbol>`);
      } else parts.push(`${g}<${child.name} id="1"/>`);
    }
    parts.push(`${g}</create>${g}`);
  } else {
    parts.push(`<transactions${attributes(document, [['id', document.id]], false)}>`);
    for (const child of document.children) {
      if (child.kind === 'order')
        parts.push(
          `${g}<order${attributes(
            document,
            [
              ['sym', child.sym],
              ['amount', child.amount],
              ['limit', child.limit],
            ],
            child.extra,
          )}/>`,
        );
      else if (child.kind === 'unknown') parts.push(`${g}<${child.name} id="1"/>`);
      else parts.push(`${g}<${child.kind}${attributes(document, [['id', child.id]], child.extra)}/>`);
    }
    parts.push(`${g}</transactions>${g}`);
  }
  return parts.join('');
}

const echoOf = (pairs: Array<[string, string | undefined]>): Attr[] =>
  pairs.filter((pair): pair is Attr => pair[1] !== undefined);

/** Asserts the result is either {kind:'error'} or a fully typed request whose fields obey the rules. */
function expectTypedOrError(result: Request | RequestParseError): void {
  expect(result).to.be.an('object');
  if (result.kind === 'error') {
    expect(result.message).to.be.a('string').and.not.equal('');
    expect(result.message.length, 'request-level reasons are cut').to.be.at.most(203);
    return;
  }
  if (result.kind === 'create') {
    for (const group of result.groups) {
      const items = group.kind === 'account' ? [group.item] : group.items;
      if (group.kind === 'symbol') expect(items.length).to.be.at.least(1);
      for (const item of items) {
        if (item.kind === 'invalid') expect(item.reason).to.be.a('string').and.not.equal('');
        else if (item.kind === 'account') {
          expect(RULES.accountId(item.accountId) && RULES.balance(item.balance), JSON.stringify(item)).to.equal(true);
        } else {
          expect(item.kind).to.equal('shares');
          expect(
            RULES.sym(item.sym) && RULES.accountId(item.accountId) && RULES.shares(item.shares),
            JSON.stringify(item),
          ).to.equal(true);
        }
      }
    }
    return;
  }
  expect(result.kind).to.equal('transactions');
  expect(result.accountId === null, 'accountId is null exactly when there is an id problem').to.equal(
    result.accountIdProblem !== null,
  );
  if (result.accountId !== null) expect(RULES.accountId(result.accountId)).to.equal(true);
  for (const item of result.items) {
    if (item.kind === 'invalid') expect(item.reason).to.be.a('string').and.not.equal('');
    else if (item.kind === 'order') {
      expect(
        RULES.sym(item.sym) && RULES.amount(item.amount) && RULES.limit(item.limit),
        JSON.stringify(item),
      ).to.equal(true);
    } else {
      expect(['query', 'cancel']).to.include(item.kind);
      if (item.orderId !== null) expect(item.orderId).to.match(/^[0-9]{1,64}$/);
    }
  }
}

/** How many generated items parsed as typed (valid) and as invalid: both sides of the oracle must be exercised. */
const grammarCoverage = { typed: 0, invalid: 0 };

function countCoverage(result: Request | RequestParseError): void {
  if (result.kind === 'error') return;
  const items =
    result.kind === 'create'
      ? result.groups.flatMap((group): CreateItem[] => (group.kind === 'account' ? [group.item] : group.items))
      : result.items;
  for (const item of items) grammarCoverage[item.kind === 'invalid' ? 'invalid' : 'typed']++;
}

/** The generated document parses to exactly the items the grammar put in, each typed or invalid as the rules say. */
function expectRoundTrip(document: GenDocument, result: Request | RequestParseError): void {
  expect(result.kind, `parsed ${renderDocument(document)} as ${JSON.stringify(result)}`).to.equal(document.root);
  if (document.root === 'create' && result.kind === 'create') {
    const expectedCount = document.children.reduce(
      (sum, child) => sum + (child.kind === 'symbol' ? Math.max(1, child.holdings.length) : 1),
      0,
    );
    const items = result.groups.flatMap((group): CreateItem[] =>
      group.kind === 'account' ? [group.item] : group.items,
    );
    expect(items.length, 'item count').to.equal(expectedCount);
    expect(result.groups.length).to.equal(document.children.length);
    document.children.forEach((child, index) => {
      const group = result.groups[index];
      if (child.kind === 'account') {
        expect(group?.kind).to.equal('account');
        const item = group?.kind === 'account' ? group.item : undefined;
        const valid =
          child.id !== undefined &&
          child.balance !== undefined &&
          RULES.accountId(child.id) &&
          RULES.balance(child.balance) &&
          !child.extra;
        if (valid) expect(item).to.deep.equal({ kind: 'account', accountId: child.id, balance: child.balance });
        else {
          expect(item?.kind).to.equal('invalid');
          if (item?.kind === 'invalid') expect(item.echo).to.deep.equal(echoOf([['id', child.id]]));
        }
      } else if (child.kind === 'symbol') {
        expect(group?.kind).to.equal('symbol');
        if (group?.kind !== 'symbol') return;
        if (child.holdings.length === 0) {
          expect(group.items.map((item) => item.kind)).to.deep.equal(['invalid']);
          return;
        }
        child.holdings.forEach((holding, position) => {
          const item = group.items[position];
          const valid =
            child.sym !== undefined &&
            RULES.sym(child.sym) &&
            !child.extra &&
            holding.id !== undefined &&
            RULES.accountId(holding.id) &&
            !holding.extra &&
            RULES.shares(holding.shares);
          if (valid)
            expect(item).to.deep.equal({
              kind: 'shares',
              sym: child.sym,
              accountId: holding.id,
              shares: holding.shares.trim(),
            });
          else {
            expect(item?.kind).to.equal('invalid');
            if (item?.kind === 'invalid')
              expect(item.echo).to.deep.equal(
                echoOf([
                  ['sym', child.sym],
                  ['id', holding.id],
                ]),
              );
          }
        });
      } else {
        expect(group?.kind === 'account' && group.item.kind).to.equal('invalid');
      }
    });
    return;
  }
  if (document.root !== 'transactions' || result.kind !== 'transactions') return;
  expect(result.items.length, 'item count').to.equal(document.children.length);
  const rootValid = document.id !== undefined && RULES.accountId(document.id);
  expect(result.accountId).to.equal(rootValid ? document.id : null);
  expect(result.accountEcho).to.deep.equal(echoOf([['id', document.id]]));
  document.children.forEach((child, index) => {
    const item = result.items[index];
    if (child.kind === 'order') {
      const echo = echoOf([
        ['sym', child.sym],
        ['amount', child.amount],
        ['limit', child.limit],
      ]);
      const valid =
        child.sym !== undefined &&
        child.amount !== undefined &&
        child.limit !== undefined &&
        RULES.sym(child.sym) &&
        RULES.amount(child.amount) &&
        RULES.limit(child.limit) &&
        !child.extra;
      if (valid)
        expect(item).to.deep.equal({ kind: 'order', sym: child.sym, amount: child.amount, limit: child.limit, echo });
      else expect(item).to.deep.include({ kind: 'invalid', echo });
    } else if (child.kind === 'query' || child.kind === 'cancel') {
      const echo = echoOf([['id', child.id]]);
      if (child.id === undefined || child.extra) {
        expect(item).to.deep.include({ kind: 'invalid', echo });
        return;
      }
      expect(item).to.deep.include({ kind: child.kind, echo });
      const orderId = item?.kind === child.kind ? item.orderId : undefined;
      if (/^[1-9][0-9]{0,17}$/.test(child.id)) expect(orderId).to.equal(child.id);
      else if (!/^[0-9]+$/.test(child.id) || /^0+$/.test(child.id)) expect(orderId).to.equal(null);
      else expect([null, child.id]).to.include(orderId);
    } else {
      expect(item).to.deep.include({ kind: 'invalid', echo: [] });
    }
  });
}

/** Strings built from the pieces XML and our grammar are made of: they reach deep into the parser. */
const xmlSoup = fc
  .array(
    fc.constantFrom(
      '<',
      '>',
      '/>',
      '</',
      '=',
      '"',
      "'",
      '&',
      ';',
      '&amp;',
      '&lt;',
      '&#65;',
      '&#x0;',
      '&#xD800;',
      '&nbsp;',
      '<!--',
      '-->',
      '<![CDATA[',
      ']]>',
      '<?xml version="1.0"?>',
      '<!DOCTYPE x [',
      '<!ENTITY e "v">',
      ']>',
      ' ',
      '\n',
      '\t',
      '\u0000',
      '\u0001',
      '\uFFFE',
      'é',
      '😀',
      'create',
      'transactions',
      'order',
      'account',
      'symbol',
      'query',
      'cancel',
      'id',
      'sym',
      'amount',
      'limit',
      'balance',
      'x:',
      'xmlns',
      '1',
      '-5',
      '1e3',
      '0.5',
      'SPY',
      '<create>',
      '</create>',
      '<transactions id="1">',
      '</transactions>',
      '<order sym="A" amount="1" limit="1"/>',
      '<account id="1" balance="5"/>',
      '<symbol sym="A">',
      '</symbol>',
      '<account id="1">',
      '</account>',
      '<query id="1"/>',
      '<cancel id="1"/>',
    ),
    { maxLength: 40 },
  )
  .map((pieces) => pieces.join(''));

describe('fuzz: parseRequest', function () {
  this.timeout(30_000);

  it('arbitrary strings (any code point) never throw and give a typed request or {kind: "error"}', () => {
    check(
      fc.property(
        fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 100 })),
        (text) => {
          expectTypedOrError(parseRequest(Buffer.from(text, 'utf8')));
        },
      ),
      11,
      800,
    );
  });

  it('arbitrary byte arrays never throw and give a typed request or {kind: "error"}', () => {
    check(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        expectTypedOrError(parseRequest(bytes));
        expect(isCompleteDocument(bytes)).to.be.a('boolean');
      }),
      12,
      800,
    );
  });

  it('XML-ish soup of our own elements, entities, DTD pieces and forbidden characters never throws', () => {
    check(
      fc.property(xmlSoup, fc.uint8Array({ maxLength: 4 }), fc.nat(), (text, noise, at) => {
        const bytes = Buffer.from(text, 'utf8');
        const position = bytes.length === 0 ? 0 : at % bytes.length;
        expectTypedOrError(parseRequest(bytes));
        // The same with a few random bytes spliced in (often breaking UTF-8).
        expectTypedOrError(parseRequest(Buffer.concat([bytes.subarray(0, position), noise, bytes.subarray(position)])));
      }),
      13,
      1500,
    );
  });

  it('grammar-built requests (valid and invalid values) round-trip their item count, kinds, values and echoes', () => {
    check(
      fc.property(genDocument, (document) => {
        const xml = renderDocument(document);
        const result = parseRequest(Buffer.from(xml, 'utf8'));
        expectTypedOrError(result);
        expectRoundTrip(document, result);
        countCoverage(result);
      }),
      14,
      1500,
    );
    expect(grammarCoverage.typed, 'valid items generated').to.be.at.least(300);
    expect(grammarCoverage.invalid, 'invalid items generated').to.be.at.least(300);
  });

  it('grammar-built requests with one byte flipped never throw', () => {
    check(
      fc.property(genDocument, fc.nat(), fc.integer({ min: 0, max: 255 }), (document, at, byte) => {
        const bytes = Buffer.from(renderDocument(document), 'utf8');
        if (bytes.length > 0) bytes[at % bytes.length] = byte;
        expectTypedOrError(parseRequest(bytes));
      }),
      15,
      800,
    );
  });
});

// ---------------------------------------------------------------------------
// (c) reply rendering
// ---------------------------------------------------------------------------

/** Any UTF-16 code unit sequence: every code point, controls, XML specials, lone surrogates. */
const anyText = fc.string({
  unit: fc.oneof(
    { weight: 4, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 0x1f }).map((code) => String.fromCharCode(code)) },
    {
      weight: 2,
      arbitrary: fc.constantFrom('<', '>', '&', '"', "'", ']]>', '&amp;', '&#0;', '<!--', '\uFFFE', '\uFFFF', '\r\n'),
    },
    { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code)) },
  ),
  maxLength: 30,
});

const REPLY_NAMES = ['error', 'created', 'opened', 'status', 'canceled', 'open', 'executed'] as const;
const ATTRIBUTE_NAMES = ['id', 'sym', 'amount', 'limit', 'shares', 'price', 'time', 'balance'] as const;

const replyAttributes = fc.uniqueArray(fc.tuple(fc.constantFrom(...ATTRIBUTE_NAMES), anyText), {
  maxLength: 4,
  selector: ([name]) => name,
});

const replyElement: fc.Arbitrary<ReplyElement> = fc.letrec<{ element: ReplyElement }>((tie) => ({
  element: fc
    .record(
      {
        name: fc.constantFrom(...REPLY_NAMES),
        attributes: replyAttributes,
        text: fc.option(anyText, { nil: undefined }),
        children: fc.option(fc.array(tie('element'), { maxLength: 3, depthIdentifier: 'reply' }), {
          nil: undefined,
          depthIdentifier: 'reply',
        }),
      },
      { requiredKeys: ['name', 'attributes'] },
    )
    .map((record): ReplyElement => {
      const element: ReplyElement = { name: record.name, attributes: record.attributes };
      if (record.text !== undefined) element.text = record.text;
      if (record.children !== undefined) element.children = record.children;
      return element;
    }),
})).element;

const XML_FORBIDDEN = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;
const replyParser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  ignoreDeclaration: true,
  trimValues: false,
});

describe('fuzz: renderResults', function () {
  this.timeout(30_000);

  it('arbitrary attribute and text strings always render a document XMLValidator accepts', () => {
    check(
      fc.property(fc.array(replyElement, { maxLength: 5 }), (results) => {
        const xml = renderResults(results);
        expect(xml.startsWith('<?xml')).to.equal(true);
        expect(XMLValidator.validate(xml), xml).to.equal(true);
        // What goes on the wire is UTF-8: still well-formed, and free of characters XML forbids.
        const wire = Buffer.from(xml, 'utf8').toString('utf8');
        expect(XMLValidator.validate(wire), wire).to.equal(true);
        expect(XML_FORBIDDEN.test(wire), `forbidden character in ${JSON.stringify(wire)}`).to.equal(false);
        // One <results> root holding one element per result.
        const roots = (replyParser.parse(wire) as Array<Record<string, unknown>>).filter((node) => 'results' in node);
        expect(roots).to.have.length(1);
        const children = ((roots[0] as Record<string, unknown>).results as Array<Record<string, unknown>>).filter(
          (node) => Object.keys(node).some((key) => key !== ':@' && key !== '#text'),
        );
        expect(children).to.have.length(results.length);
      }),
      21,
      1000,
    );
  });

  // xmlbuilder2 leaves '&' unescaped when what follows looks like a reference ("&amp;",
  // "&#0;"), so it echoed a decoded "&amp;amp;" as "&amp;" and "&#38;#0;" as an illegal
  // "&#0;". Those inputs are compared in render-reply.test.ts instead; the rest byte for byte.
  const looksLikeReference = (reply: ReplyElement): boolean =>
    [...reply.attributes.map(([, value]) => value), reply.text ?? ''].some((text) => /&[^&]*;/.test(text)) ||
    (reply.children ?? []).some(looksLikeReference);

  it('renders byte for byte what xmlbuilder2 rendered (the renderer it replaced)', () => {
    check(
      fc.property(fc.array(replyElement, { maxLength: 5 }), (results) => {
        fc.pre(!results.some(looksLikeReference));
        expect(renderResults(results)).to.equal(referenceRenderResults(results));
      }),
      23,
      2000,
    );
  });

  // XML attribute-value normalization (XML 1.0 §3.3.3) turns a literal tab, newline or carriage
  // return inside an attribute into a space, and end-of-line handling turns a literal CR in text
  // into LF; so an echo such as sym="A&#10;B" must be written with &#9; / &#10; / &#13; to reach a
  // conforming client as sent. (Found by this property; fixed in render-reply.ts.)
  it('attribute values and texts survive a conforming parser (no raw TAB/LF/CR in attributes, no raw CR in text)', () => {
    check(
      fc.property(fc.array(replyElement, { maxLength: 5 }), (results) => {
        const xml = renderResults(results);
        for (const match of xml.matchAll(/\s[a-z]+="([^"]*)"/g)) {
          expect(
            /[\t\n\r]/.test(match[1] as string),
            `raw whitespace in attribute ${JSON.stringify(match[0])}`,
          ).to.equal(false);
        }
        expect(xml.includes('\r'), 'raw CR in the document').to.equal(false);
      }),
      22,
      500,
    );
  });
});
