import { expect } from 'chai';
import { seededRandom as prng } from '../../client/random.js';
import {
  ReplyDecoder,
  RequestFramer,
  frameReply,
  frameRequest,
  withoutRepeatedLengthLine,
  type FrameEvent,
  type ReplyEvent,
  type ReplyFraming,
} from '../../server/protocol/framing.js';
import { isCompleteDocument } from '../../server/protocol/parse-request.js';
import { renderResults } from '../../server/protocol/render-reply.js';
import { element, errorElement } from '../../server/protocol/replies.js';
import { detailedProblem } from '../../server/errors.js';

type Shown = { type: 'request'; body: string } | { type: 'error'; reason: string };

function show(events: FrameEvent[]): Shown[] {
  return events.map((event) =>
    event.type === 'request'
      ? { type: 'request', body: event.body.toString('utf8') }
      : { type: 'error', reason: event.problem.message },
  );
}

function feed(framer: RequestFramer, chunks: Buffer[]): Shown[] {
  const events: FrameEvent[] = [];
  for (const chunk of chunks) events.push(...framer.push(chunk));
  return show(events);
}

function frame(xml: string, prefix = ''): Buffer {
  const body = Buffer.from(xml, 'utf8');
  return Buffer.concat([Buffer.from(`${prefix}${body.length}\n`, 'ascii'), body]);
}

function byteByByte(bytes: Buffer): Buffer[] {
  return [...bytes].map((byte) => Buffer.from([byte]));
}

function randomChunks(bytes: Buffer, random: () => number, maxChunk: number): Buffer[] {
  const chunks: Buffer[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const size = 1 + Math.floor(random() * maxChunk);
    chunks.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

const MAX = 1_048_576;
const CREATE = '<?xml version="1.0" encoding="UTF-8"?>\n<create><account id="1" balance="1000"/></create>';
const TRANSACTIONS =
  '<transactions id="1"><order sym="SPY" amount="100" limit="145.67"/><query id="1"/></transactions>';
const UNICODE = '<create><account id="2" balance="5">é€😀</account></create>';

/** Three requests back to back, with every tolerated framing variation between them. */
const STREAM = Buffer.concat([
  frame(CREATE),
  Buffer.from('\r\n\n  \t', 'ascii'),
  Buffer.concat([Buffer.from(`000${Buffer.byteLength(TRANSACTIONS)}\r\n`, 'ascii'), Buffer.from(TRANSACTIONS)]),
  frame(UNICODE, '\n'),
]);
const EXPECTED: Shown[] = [
  { type: 'request', body: CREATE },
  { type: 'request', body: TRANSACTIONS },
  { type: 'request', body: UNICODE },
];

describe('RequestFramer', () => {
  describe('splitting', () => {
    it('frames several requests merged into one chunk', () => {
      expect(feed(new RequestFramer(MAX), [STREAM])).to.deep.equal(EXPECTED);
    });

    it('frames the stream fed one byte at a time', () => {
      expect(feed(new RequestFramer(MAX), byteByByte(STREAM))).to.deep.equal(EXPECTED);
    });

    it('frames the stream split into two chunks at every byte boundary', () => {
      for (let cut = 0; cut <= STREAM.length; cut++) {
        const events = feed(new RequestFramer(MAX), [STREAM.subarray(0, cut), STREAM.subarray(cut)]);
        expect(events, `cut at ${cut}`).to.deep.equal(EXPECTED);
      }
    });

    it('frames the stream split into three chunks at many boundary pairs', () => {
      for (let first = 0; first <= STREAM.length; first += 3) {
        for (let second = first; second <= STREAM.length; second += 7) {
          const chunks = [STREAM.subarray(0, first), STREAM.subarray(first, second), STREAM.subarray(second)];
          expect(feed(new RequestFramer(MAX), chunks), `cuts at ${first}, ${second}`).to.deep.equal(EXPECTED);
        }
      }
    });

    it('frames the stream in random chunk sizes (seeded)', () => {
      for (let seed = 1; seed <= 200; seed++) {
        const random = prng(seed);
        const chunks = randomChunks(STREAM, random, 1 + Math.floor(random() * 40));
        expect(feed(new RequestFramer(MAX), chunks), `seed ${seed}`).to.deep.equal(EXPECTED);
      }
    });

    it('splits a multibyte UTF-8 character across chunks without damage', () => {
      const bytes = frame(UNICODE);
      const euro = bytes.indexOf(Buffer.from('€'));
      const events = feed(new RequestFramer(MAX), [
        bytes.subarray(0, euro + 1),
        bytes.subarray(euro + 1, euro + 2),
        bytes.subarray(euro + 2),
      ]);
      expect(events).to.deep.equal([{ type: 'request', body: UNICODE }]);
    });

    it('returns body bytes exactly (N counts bytes, not characters)', () => {
      const events = new RequestFramer(MAX).push(frame(UNICODE));
      expect(events).to.have.length(1);
      const event = events[0];
      if (event?.type !== 'request') throw new Error('expected a request');
      expect(event.body.equals(Buffer.from(UNICODE, 'utf8'))).to.equal(true);
      expect(event.body.length).to.be.greaterThan(UNICODE.length);
    });

    it('keeps bytes after a request for the next one', () => {
      const framer = new RequestFramer(MAX);
      expect(feed(framer, [Buffer.from('5\nhello3\nab')])).to.deep.equal([{ type: 'request', body: 'hello' }]);
      expect(framer.hasPartialRequest()).to.equal(true);
      expect(feed(framer, [Buffer.from('c')])).to.deep.equal([{ type: 'request', body: 'abc' }]);
      expect(framer.hasPartialRequest()).to.equal(false);
    });
  });

  describe('length line', () => {
    it('accepts \\r\\n after the length', () => {
      expect(feed(new RequestFramer(MAX), [Buffer.from('5\r\nhello')])).to.deep.equal([
        { type: 'request', body: 'hello' },
      ]);
    });

    it('accepts blank lines and spaces before the number', () => {
      for (const prefix of ['\n', '\r\n', '\n\n\n', '   ', '\t', ' \r\n \n\t  ']) {
        const events = feed(new RequestFramer(MAX), [Buffer.from(`${prefix}5\nhello`)]);
        expect(events, JSON.stringify(prefix)).to.deep.equal([{ type: 'request', body: 'hello' }]);
      }
    });

    it('accepts leading zeros', () => {
      expect(feed(new RequestFramer(MAX), [Buffer.from('0005\nhello')])).to.deep.equal([
        { type: 'request', body: 'hello' },
      ]);
      expect(feed(new RequestFramer(MAX), [Buffer.from('00\n')])).to.deep.equal([{ type: 'request', body: '' }]);
    });

    it('treats N=0 as an empty request and continues with the next one', () => {
      const framer = new RequestFramer(MAX);
      expect(feed(framer, [Buffer.from('0\n5\nhello')])).to.deep.equal([
        { type: 'request', body: '' },
        { type: 'request', body: 'hello' },
      ]);
      expect(framer.hasPartialRequest()).to.equal(false);
    });

    it('rejects a length line that is not digits', () => {
      for (const line of [
        'abc\n',
        '5x\nhello',
        '-5\nhello',
        '+5\nhello',
        '5 3\nhello',
        '0x10\n',
        '<create/>',
        '5.0\nhello',
      ]) {
        const events = feed(new RequestFramer(MAX), [Buffer.from(line)]);
        expect(events, JSON.stringify(line)).to.have.length(1);
        expect(events[0]?.type, JSON.stringify(line)).to.equal('error');
      }
    });

    it('rejects a non-digit first byte immediately, before any newline', () => {
      const framer = new RequestFramer(MAX);
      const events = feed(framer, [Buffer.from('<')]);
      expect(events).to.have.length(1);
      expect(events[0]?.type).to.equal('error');
    });

    it('rejects a length above the maximum, and accepts exactly the maximum', () => {
      const over = feed(new RequestFramer(1000), [Buffer.from('1001\n')]);
      expect(over).to.have.length(1);
      expect(over[0]?.type).to.equal('error');

      const exact = new RequestFramer(1000);
      expect(feed(exact, [Buffer.from('1000\n')])).to.deep.equal([]);
      expect(exact.hasPartialRequest()).to.equal(true);
      const body = 'x'.repeat(1000);
      expect(feed(exact, [Buffer.from(body)])).to.deep.equal([{ type: 'request', body }]);
    });

    it('rejects a huge length without overflowing', () => {
      const events = feed(new RequestFramer(MAX), [Buffer.from('99999999999999999999999999\n')]);
      expect(events).to.have.length(1);
      expect(events[0]?.type).to.equal('error');
    });

    it('emits nothing after an error', () => {
      const framer = new RequestFramer(1000);
      const events = feed(framer, [Buffer.from('2000\n5\nhello')]);
      expect(events).to.have.length(1);
      expect(events[0]?.type).to.equal('error');
      expect(framer.push(Buffer.from('5\nhello'))).to.deep.equal([]);
      expect(framer.end(() => true)).to.deep.equal([]);
      expect(framer.takeCompleteShortBody(() => true)).to.equal(null);
      expect(framer.hasPartialRequest()).to.equal(false);
    });

    it('reports only the first error when several bad lines arrive in one chunk', () => {
      const events = feed(new RequestFramer(MAX), [Buffer.from('abc\ndef\n5\nhello')]);
      expect(events).to.have.length(1);
      expect(events[0]?.type).to.equal('error');
    });

    it('rejects a too-long length line before its newline arrives', () => {
      const framer = new RequestFramer(MAX);
      const events: FrameEvent[] = [];
      for (let i = 0; i < 1000 && events.length === 0; i++) events.push(...framer.push(Buffer.from('1')));
      expect(events).to.have.length(1);
      expect(events[0]?.type).to.equal('error');
      expect(framer.hasPartialRequest()).to.equal(false);
    });

    it('gives the same outcome for a long run of leading zeros however it is chunked', () => {
      const bytes = Buffer.from(`${'0'.repeat(40)}5\nhello`);
      const whole = feed(new RequestFramer(MAX), [bytes]);
      const trickled = feed(new RequestFramer(MAX), byteByByte(bytes));
      expect(trickled).to.deep.equal(whole);
    });

    it('ignores blank bytes between requests without starting a request', () => {
      const framer = new RequestFramer(MAX);
      expect(feed(framer, [Buffer.from('\r\n  \n')])).to.deep.equal([]);
      expect(framer.hasPartialRequest()).to.equal(false);
      expect(framer.end(isCompleteDocument)).to.deep.equal([]);
    });

    it('ignores empty chunks', () => {
      const framer = new RequestFramer(MAX);
      expect(framer.push(Buffer.alloc(0))).to.deep.equal([]);
      expect(framer.hasPartialRequest()).to.equal(false);
    });
  });

  describe('a length line sent twice (N\\nM\\n<xml>)', () => {
    /** What such a client sends: the request framed, then framed again as a whole. */
    const twice = (xml: string, inner = ''): Buffer => {
      const once = frame(xml, inner);
      return Buffer.concat([Buffer.from(`${once.length}\n`, 'ascii'), once]);
    };

    it('skips the inner line when its value is exactly the bytes after it', () => {
      expect(feed(new RequestFramer(MAX), [twice(CREATE)])).to.deep.equal([{ type: 'request', body: CREATE }]);
      expect(feed(new RequestFramer(MAX), [twice(UNICODE)])).to.deep.equal([{ type: 'request', body: UNICODE }]);
    });

    it('gives the same requests however the doubled stream is chunked', () => {
      const stream = Buffer.concat([twice(CREATE), frame(TRANSACTIONS), twice(UNICODE)]);
      const expected = [
        { type: 'request', body: CREATE },
        { type: 'request', body: TRANSACTIONS },
        { type: 'request', body: UNICODE },
      ];
      expect(feed(new RequestFramer(MAX), byteByByte(stream))).to.deep.equal(expected);
      for (let cut = 0; cut <= stream.length; cut++) {
        expect(
          feed(new RequestFramer(MAX), [stream.subarray(0, cut), stream.subarray(cut)]),
          `cut at ${cut}`,
        ).to.deep.equal(expected);
      }
    });

    it('tolerates on the inner line what it tolerates on the outer one: \\r\\n, spaces after, leading zeros', () => {
      for (const [before, after] of [
        ['', '\r\n'],
        ['', ' \t\r\n'],
        ['000', '\n'],
      ] as const) {
        const body = Buffer.from(`${before}${Buffer.byteLength(TRANSACTIONS)}${after}${TRANSACTIONS}`);
        const framed = Buffer.concat([Buffer.from(`${body.length}\n`), body]);
        expect(feed(new RequestFramer(MAX), [framed]), JSON.stringify([before, after])).to.deep.equal([
          { type: 'request', body: TRANSACTIONS },
        ]);
      }
    });

    it('leaves digits whose value does not match in the body (the parser calls it malformed)', () => {
      const bytes = Buffer.byteLength(TRANSACTIONS);
      for (const inner of [bytes - 1, bytes + 1, 0, 10 * bytes]) {
        const body = `${inner}\n${TRANSACTIONS}`;
        expect(feed(new RequestFramer(MAX), [frame(body)]), `inner ${inner}`).to.deep.equal([
          { type: 'request', body },
        ]);
      }
    });

    it('removes one layer only, and only a whole line of digits', () => {
      const inner = frame(TRANSACTIONS);
      const thrice = frame(frame(inner.toString('utf8')).toString('utf8'));
      expect(feed(new RequestFramer(MAX), [thrice])).to.deep.equal([{ type: 'request', body: inner.toString('utf8') }]);
      for (const body of [` 5\nhello`, `5x\nhello`, `-5\nhello`, `5`, `55555`, `\n5\nhello`]) {
        expect(withoutRepeatedLengthLine(Buffer.from(body)).toString(), JSON.stringify(body)).to.equal(body);
      }
      expect(withoutRepeatedLengthLine(Buffer.from('0\n')).toString()).to.equal('');
      expect(
        withoutRepeatedLengthLine(Buffer.from(`${'0'.repeat(40)}5\nhello`)).toString(),
        'an inner line past 32 bytes is not a length line',
      ).to.equal(`${'0'.repeat(40)}5\nhello`);
    });

    it('applies to a complete short body taken after the grace period, and at half-close', () => {
      const xml = '<create><account id="1" balance="5"/></create>';
      const inner = frame(xml);
      const overstated = Buffer.concat([Buffer.from(`${inner.length + 10}\n`), inner]);
      const framer = new RequestFramer(MAX);
      expect(feed(framer, [overstated])).to.deep.equal([]);
      const event = framer.takeCompleteShortBody(isCompleteDocument);
      expect(event && show([event])).to.deep.equal([{ type: 'request', body: xml }]);
      const closing = new RequestFramer(MAX);
      feed(closing, [overstated]);
      expect(show(closing.end(isCompleteDocument))).to.deep.equal([{ type: 'request', body: xml }]);
    });
  });

  describe('takeCompleteShortBody (overstated length)', () => {
    it('returns a complete document that is shorter than declared, then starts afresh', () => {
      const framer = new RequestFramer(MAX);
      const xml = '<create><account id="1" balance="5"/></create>';
      expect(feed(framer, [Buffer.from(`${Buffer.byteLength(xml) + 5}\n${xml}`)])).to.deep.equal([]);
      expect(framer.partialBodyBytes()).to.equal(Buffer.byteLength(xml));
      const event = framer.takeCompleteShortBody(isCompleteDocument);
      expect(event && show([event])).to.deep.equal([{ type: 'request', body: xml }]);
      expect(framer.hasPartialRequest()).to.equal(false);
      expect(feed(framer, [Buffer.from('5\nhello')])).to.deep.equal([{ type: 'request', body: 'hello' }]);
    });

    it('accepts a complete document followed by trailing whitespace', () => {
      const framer = new RequestFramer(MAX);
      feed(framer, [Buffer.from('100\n<create/>\r\n')]);
      const event = framer.takeCompleteShortBody(isCompleteDocument);
      expect(event && show([event])).to.deep.equal([{ type: 'request', body: '<create/>\r\n' }]);
    });

    it('returns null for an incomplete document and keeps waiting', () => {
      const framer = new RequestFramer(MAX);
      const xml = '<create><account id="1" balance="5"/></create>';
      const bytes = Buffer.from(`${Buffer.byteLength(xml)}\n${xml}`);
      const cut = bytes.length - 4;
      feed(framer, [bytes.subarray(0, cut)]);
      expect(framer.takeCompleteShortBody(isCompleteDocument)).to.equal(null);
      expect(framer.hasPartialRequest()).to.equal(true);
      expect(feed(framer, [bytes.subarray(cut)])).to.deep.equal([{ type: 'request', body: xml }]);
    });

    it('returns null before the length line is complete or before any body byte', () => {
      const framer = new RequestFramer(MAX);
      feed(framer, [Buffer.from('10')]);
      expect(framer.takeCompleteShortBody(() => true)).to.equal(null);
      feed(framer, [Buffer.from('\n')]);
      expect(framer.takeCompleteShortBody(() => true)).to.equal(null);
      expect(framer.hasPartialRequest()).to.equal(true);
    });

    it('hands the checker exactly the buffered body bytes', () => {
      const framer = new RequestFramer(MAX);
      feed(framer, [Buffer.from('50\n<cre'), Buffer.from('ate/>')]);
      const seen: string[] = [];
      framer.takeCompleteShortBody((body) => {
        seen.push(Buffer.from(body).toString('utf8'));
        return false;
      });
      expect(seen).to.deep.equal(['<create/>']);
    });
  });

  describe('end (client half-closed)', () => {
    it('processes a complete short body', () => {
      const framer = new RequestFramer(MAX);
      feed(framer, [Buffer.from('100\n<create/>')]);
      expect(show(framer.end(isCompleteDocument))).to.deep.equal([{ type: 'request', body: '<create/>' }]);
      expect(framer.hasPartialRequest()).to.equal(false);
    });

    it('reports an error mid-body', () => {
      const framer = new RequestFramer(MAX);
      feed(framer, [Buffer.from('100\n<create><acc')]);
      const events = framer.end(isCompleteDocument);
      expect(events).to.have.length(1);
      expect(events[0]?.type).to.equal('error');
      expect(framer.hasPartialRequest()).to.equal(false);
    });

    it('reports an error after the length line with no body', () => {
      const framer = new RequestFramer(MAX);
      feed(framer, [Buffer.from('100\n')]);
      const events = framer.end(isCompleteDocument);
      expect(events).to.have.length(1);
      expect(events[0]?.type).to.equal('error');
    });

    it('reports an error mid length line', () => {
      const framer = new RequestFramer(MAX);
      feed(framer, [Buffer.from('\n12')]);
      const events = framer.end(isCompleteDocument);
      expect(events).to.have.length(1);
      expect(events[0]?.type).to.equal('error');
    });

    it('is quiet after whole requests or only blank bytes', () => {
      const framer = new RequestFramer(MAX);
      feed(framer, [Buffer.from('5\nhello\r\n')]);
      expect(framer.end(isCompleteDocument)).to.deep.equal([]);
      expect(new RequestFramer(MAX).end(isCompleteDocument)).to.deep.equal([]);
    });
  });

  describe('hasPartialRequest', () => {
    it('tracks the life of a request', () => {
      const framer = new RequestFramer(MAX);
      expect(framer.hasPartialRequest()).to.equal(false);
      framer.push(Buffer.from('\n'));
      expect(framer.hasPartialRequest()).to.equal(false);
      framer.push(Buffer.from('1'));
      expect(framer.hasPartialRequest()).to.equal(true);
      expect(framer.partialBodyBytes()).to.equal(0);
      framer.push(Buffer.from('0\n'));
      expect(framer.hasPartialRequest()).to.equal(true);
      expect(framer.partialBodyBytes()).to.equal(0);
      framer.push(Buffer.from('<create'));
      expect(framer.hasPartialRequest()).to.equal(true);
      expect(framer.partialBodyBytes()).to.equal(7);
      expect(show(framer.push(Buffer.from(' />')))).to.deep.equal([{ type: 'request', body: '<create />' }]);
      expect(framer.hasPartialRequest()).to.equal(false);
      expect(framer.partialBodyBytes()).to.equal(0);
      framer.push(Buffer.from('x'));
      expect(framer.hasPartialRequest()).to.equal(false);
    });
  });
});

describe('frameRequest', () => {
  it('is the byte count, a newline, then the body as given', () => {
    expect(frameRequest('<create/>').toString('latin1')).to.equal('9\n<create/>');
    expect(frameRequest('é').equals(Buffer.from('2\n\u00c3\u00a9', 'latin1'))).to.equal(true);
    const raw = Buffer.from([0xff, 0x00, 0x3c]);
    expect(frameRequest(raw).equals(Buffer.concat([Buffer.from('3\n'), raw]))).to.equal(true);
  });

  it('reads back with the request framer', () => {
    expect(feed(new RequestFramer(MAX), [frameRequest(CREATE), frameRequest(UNICODE)])).to.deep.equal([
      { type: 'request', body: CREATE },
      { type: 'request', body: UNICODE },
    ]);
  });
});

describe('frameReply', () => {
  const ascii = renderResults([element('created', [['id', '1']])]);
  const multibyte = renderResults([errorElement([['sym', 'é']], detailedProblem('invalid_item', '€ and 😀'))]);

  it('bare: the document alone', () => {
    const bytes = frameReply(ascii, 'bare');
    expect(Buffer.isBuffer(bytes)).to.equal(true);
    expect(bytes.equals(Buffer.from(ascii, 'utf8'))).to.equal(true);
    expect(frameReply(multibyte, 'bare').equals(Buffer.from(multibyte, 'utf8'))).to.equal(true);
  });

  for (const [label, xml] of [
    ['ASCII', ascii],
    ['multibyte UTF-8', multibyte],
  ] as const) {
    it(`length: the byte count, a newline, the document (${label})`, () => {
      const expected = Buffer.concat([
        Buffer.from(`${Buffer.byteLength(xml, 'utf8')}\n`, 'ascii'),
        Buffer.from(xml, 'utf8'),
      ]);
      expect(frameReply(xml, 'length').equals(expected)).to.equal(true);
    });
  }

  it('length: the prefix counts bytes, not characters', () => {
    const prefix = frameReply(multibyte, 'length').toString('latin1').split('\n')[0];
    expect(Number(prefix)).to.be.greaterThan(multibyte.length);
  });

  it('length: a framed reply reads back with the request framer (framed like a request)', () => {
    const framer = new RequestFramer(1 << 20);
    const events = framer.push(Buffer.concat([frameReply(ascii, 'length'), frameReply(multibyte, 'length')]));
    expect(
      events.map((event) => (event.type === 'request' ? event.body.toString('utf8') : event.problem.message)),
    ).to.deep.equal([ascii, multibyte]);
  });
});

describe('ReplyDecoder', () => {
  const ONE = renderResults([element('created', [['id', '1']])]);
  const TWO = renderResults([errorElement([['sym', 'é']], detailedProblem('invalid_item', '€ and 😀'))]);

  type ShownReply =
    | { type: 'reply'; xml: string }
    | { type: 'error'; code: string; serverFraming: ReplyFraming | null };
  const showReplies = (events: ReplyEvent[]): ShownReply[] =>
    events.map((event) =>
      event.type === 'reply'
        ? event
        : { type: 'error', code: event.error.code, serverFraming: event.error.serverFraming },
    );

  function decode(decoder: ReplyDecoder, chunks: Buffer[], close = false): ShownReply[] {
    const events: ReplyEvent[] = [];
    for (const chunk of chunks) events.push(...decoder.push(chunk));
    if (close) events.push(...decoder.end());
    return showReplies(events);
  }

  describe('length framing', () => {
    const stream = Buffer.concat([frameReply(ONE, 'length'), frameReply(TWO, 'length'), frameReply(ONE, 'length')]);
    const expected = [
      { type: 'reply', xml: ONE },
      { type: 'reply', xml: TWO },
      { type: 'reply', xml: ONE },
    ];

    it('decodes replies back to back, however the stream is chunked', () => {
      expect(decode(new ReplyDecoder('length'), [stream], true)).to.deep.equal(expected);
      expect(decode(new ReplyDecoder('length'), byteByByte(stream), true)).to.deep.equal(expected);
      for (let cut = 0; cut <= stream.length; cut++) {
        expect(
          decode(new ReplyDecoder('length'), [stream.subarray(0, cut), stream.subarray(cut)], true),
          `cut at ${cut}`,
        ).to.deep.equal(expected);
      }
      for (let seed = 1; seed <= 50; seed++) {
        expect(
          decode(new ReplyDecoder('length'), randomChunks(stream, prng(seed), 30), true),
          `seed ${seed}`,
        ).to.deep.equal(expected);
      }
    });

    it('says at once that a bare server replied (the reply starts with "<"), never waiting for more', () => {
      const decoder = new ReplyDecoder('length');
      expect(decode(decoder, [Buffer.from('<?xml')])).to.deep.equal([
        { type: 'error', code: 'wrong-framing', serverFraming: 'bare' },
      ]);
      expect(decoder.hasPartialReply()).to.equal(false);
      expect(decode(decoder, [Buffer.from(' version="1.0"?>')], true), 'nothing after the error').to.deep.equal([]);
    });

    it('a bad length line is an error, never a loop or a wait', () => {
      for (const bad of ['12x\n', 'abc\n', '-5\n', '1.5\n', `${'1'.repeat(40)}`, '5 5\n']) {
        const shown = decode(new ReplyDecoder('length'), [frameReply(ONE, 'length'), Buffer.from(bad)]);
        expect(shown, JSON.stringify(bad)).to.deep.equal([
          { type: 'reply', xml: ONE },
          { type: 'error', code: 'bad-length-line', serverFraming: null },
        ]);
      }
      // Mid-stream, a document where a length line belongs is a broken stream, not a framing to detect.
      const shown = decode(new ReplyDecoder('length'), [frameReply(ONE, 'length'), frameReply(ONE, 'bare')]);
      expect(shown[1]).to.deep.equal({ type: 'error', code: 'bad-length-line', serverFraming: null });
    });

    it('refuses a declared length above its maximum without buffering it', () => {
      expect(decode(new ReplyDecoder('length', 1000), [Buffer.from('1001\n<')])).to.deep.equal([
        { type: 'error', code: 'reply-too-large', serverFraming: null },
      ]);
      expect(decode(new ReplyDecoder('length'), [Buffer.from('99999999999999999999\n')])).to.deep.equal([
        { type: 'error', code: 'reply-too-large', serverFraming: null },
      ]);
    });

    it('a close in the middle of a reply is "truncated"; a close between replies is nothing', () => {
      const framed = frameReply(ONE, 'length');
      expect(decode(new ReplyDecoder('length'), [framed.subarray(0, framed.length - 1)], true)).to.deep.equal([
        { type: 'error', code: 'truncated', serverFraming: null },
      ]);
      expect(decode(new ReplyDecoder('length'), [Buffer.from('12')], true)).to.deep.equal([
        { type: 'error', code: 'truncated', serverFraming: null },
      ]);
      expect(decode(new ReplyDecoder('length'), [framed], true)).to.deep.equal([{ type: 'reply', xml: ONE }]);
      expect(decode(new ReplyDecoder('length'), [], true)).to.deep.equal([]);
    });
  });

  describe('bare framing', () => {
    it('the reply is everything until the server closes', () => {
      const bytes = frameReply(TWO, 'bare');
      const decoder = new ReplyDecoder('bare');
      expect(decode(decoder, byteByByte(bytes))).to.deep.equal([]);
      expect(decoder.hasPartialReply()).to.equal(true);
      expect(showReplies(decoder.end())).to.deep.equal([{ type: 'reply', xml: TWO }]);
    });

    it('says at once that a length server replied (the reply starts with a digit)', () => {
      expect(decode(new ReplyDecoder('bare'), [Buffer.from('1')])).to.deep.equal([
        { type: 'error', code: 'wrong-framing', serverFraming: 'length' },
      ]);
    });

    it('a close with no reply at all is "no-reply"; bytes that are no reply are "not-a-reply"', () => {
      expect(decode(new ReplyDecoder('bare'), [], true)).to.deep.equal([
        { type: 'error', code: 'no-reply', serverFraming: null },
      ]);
      expect(decode(new ReplyDecoder('bare'), [Buffer.from('HTTP/1.1 400')])).to.deep.equal([
        { type: 'error', code: 'not-a-reply', serverFraming: null },
      ]);
    });

    it('refuses a reply above its maximum', () => {
      expect(decode(new ReplyDecoder('bare', 100), [Buffer.from(`<${'x'.repeat(100)}`)])).to.deep.equal([
        { type: 'error', code: 'reply-too-large', serverFraming: null },
      ]);
    });
  });

  describe("auto (detecting the server's framing)", () => {
    it('takes length framing from a first reply that starts with a digit, and holds to it', () => {
      const decoder = new ReplyDecoder('auto');
      expect(decoder.framing).to.equal(null);
      expect(decode(decoder, [frameReply(ONE, 'length').subarray(0, 1)])).to.deep.equal([]);
      expect(decoder.framing).to.equal('length');
      expect(decode(decoder, [frameReply(ONE, 'length').subarray(1), frameReply(TWO, 'length')], true)).to.deep.equal([
        { type: 'reply', xml: ONE },
        { type: 'reply', xml: TWO },
      ]);
    });

    it('takes bare framing from a first reply that starts with "<"', () => {
      const decoder = new ReplyDecoder('auto');
      expect(decode(decoder, byteByByte(frameReply(ONE, 'bare')), true)).to.deep.equal([{ type: 'reply', xml: ONE }]);
      expect(decoder.framing).to.equal('bare');
    });

    it('does not decide on blank bytes alone', () => {
      const decoder = new ReplyDecoder('auto');
      expect(decode(decoder, [Buffer.from('\r\n ')])).to.deep.equal([]);
      expect(decoder.framing).to.equal(null);
    });
  });
});
