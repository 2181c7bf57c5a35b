/**
 * Hostile and broken input, through the real socket against a real server.
 *
 * One table of cases, one `it` per case. For every case:
 *  - the reply is one well-formed `<results>` document starting with `<?xml`, holding the
 *    expected `<error>` (request-level, or one per item, as docs/protocol.md says);
 *  - the database is unchanged (counts and sums of accounts, symbols, positions, orders,
 *    executions, taken through the test server's pool before and after);
 *  - the server still answers a normal request afterwards.
 * Most cases use the default bare framing (one request per connection); a few use length
 * framing, where an XML-level error must leave the connection usable.
 */
import { expect } from 'chai';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ERROR_MESSAGES } from '../../server/errors.js';
import { LengthClient, frameRequest, sendRaw, sendRequest } from '../support/client.js';
import type pg from 'pg';
import { createTestDatabase } from '../support/database.js';
import { startServerProcess } from '../support/process.js';
import { SHARED_REDIS_URL } from '../support/redis.js';
import { startTestServer } from '../support/server.js';
import { createPool } from '../../server/store/pool.js';
import { parseResults, type ReplyNode } from '../support/xml.js';

// ---------------------------------------------------------------------------
// Fixtures: a small market that every case leaves exactly as it found it
// ---------------------------------------------------------------------------

/** Rich trader: cash, shares of SYM, one open buy. */
const A = '880001';
/** Second trader: shares of SYM, one open sell (partly filled against A). */
const B = '880002';
const SYM = 'HSYM';
/** Accounts that hostile cases try to create; none may ever exist. */
const NEVER = '880999';
/** Used only by a case that the current server wrongly accepts, so it cannot disturb the others. */
const NEVER_TOO = '880998';
const MAX_REQUEST_BYTES = 1024 * 1024;
/** A's open buy (8 of 10 open), set up in before(). */
let openBuyId = '';

// ---------------------------------------------------------------------------
// Building hostile bytes
// ---------------------------------------------------------------------------

type Wire = string | Buffer | Array<string | Buffer>;

/** A correct length line followed by the body (string bodies are UTF-8). */
function frame(body: string | Buffer): Buffer {
  return typeof body === 'string' ? frameRequest(body) : Buffer.concat([Buffer.from(`${body.length}\n`), body]);
}

/** A request that would create NEVER, used inside doubled length lines. */
const NEVER_BODY = `<create><account id="${NEVER}" balance="5"/></create>`;
const NEVER_BODY_BYTES = (): number => Buffer.byteLength(NEVER_BODY);

function bytes(...parts: Array<string | number[] | Buffer>): Buffer {
  return Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'utf8') : Buffer.from(part))));
}

function tx(children: string, id = A): string {
  return `<transactions id="${id}">${children}</transactions>`;
}

function order(sym: string, amount: string, limit: string): string {
  return `<order sym="${sym}" amount="${amount}" limit="${limit}"/>`;
}

/** A body of exactly `size` bytes: a well-formed <transactions> whose one item is invalid, padded by a comment. */
function paddedTransactions(size: number): Buffer {
  const head = `<transactions id="${A}">${order(SYM, '+1', '1')}<!--`;
  const tail = '--></transactions>';
  return Buffer.from(head + 'x'.repeat(size - head.length - tail.length) + tail);
}

const BILLION_LAUGHS = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<create><account id="${NEVER}" balance="&lol9;"/></create>`;

// ---------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------

type ItemError = { attributes: Record<string, string>; text: RegExp | string };
type Expectation = { request: RegExp } | { items: ItemError[] };

const requestError = (text: RegExp): Expectation => ({ request: text });
const itemErrors = (...items: Array<[Record<string, string>, RegExp | string]>): Expectation => ({
  items: items.map(([attributes, text]) => ({ attributes, text })),
});

const INVALID_LENGTH = /invalid length line/;
const TOO_LARGE = /exceeds the maximum/;
const TRUNCATED = /truncated request/;
const MALFORMED = /malformed XML/;
const NO_DTD = /DOCTYPE and entity declarations are not allowed/;
const NOT_UTF8 = /not valid UTF-8/;
const FORBIDDEN_CHARACTER = /character not allowed in XML/;
const EMPTY = /request is empty/;
const WRONG_ROOT = /unknown root element|exactly one root element/;
const TOO_MANY_ITEMS = /more than 10000 items/;
const TOO_MANY_ATTRIBUTES = /an element has more than 16 attributes/;
const TOO_MANY_ELEMENTS = /more than 20000 elements below its root/;
const TOO_DEEP = /deeper than 16 levels/;
const ANY = /\S/;

type Case = {
  name: string;
  wire: () => Wire;
  expect: Expectation;
  /** Shut down our sending side after writing (bare framing). */
  halfClose?: boolean;
  framing?: 'bare' | 'length';
  /** Length framing: whether the connection must stay usable after this reply. */
  staysOpen?: boolean;
  /** Replies to huge garbage must stay small. */
  maxReplyBytes?: number;
  /** A genuine server defect: the case asserts correct behaviour and is skipped (see the report). */
  defect?: string;
};

// ---------------------------------------------------------------------------
// Attribute variants: every value invalid in every way
// ---------------------------------------------------------------------------

type Variant = [label: string, value: string];

const BAD_ACCOUNT_IDS: Variant[] = [
  ['empty', ''],
  ['a plus sign', '+5'],
  ['a minus sign', '-5'],
  ['a letter', '12a'],
  ['a space inside', '1 2'],
  ['a decimal point', '1.0'],
  ['an exponent', '1e3'],
  ['Arabic-Indic digits', '١٢٣'],
  ['fullwidth digits', '１２３'],
  ['65 digits', '9'.repeat(65)],
];

const BAD_DECIMALS: Variant[] = [
  ['empty', ''],
  ['a plus sign', '+5'],
  ['an exponent', '1e3'],
  ['huge precision (40 decimal places)', `0.${'1234567890'.repeat(4)}`],
  ['huge magnitude (40 digits)', '9'.repeat(40)],
  ['hexadecimal', '0x10'],
  ['NaN', 'NaN'],
  ['Infinity', 'Infinity'],
  ['a thousands comma', '1,5'],
  ['a bare fraction', '.5'],
  ['a trailing point', '5.'],
  ['a double minus', '--5'],
  ['a currency sign', '$5'],
  ['Arabic-Indic digits', '١٢٣'],
  ['65 characters', '1'.repeat(65)],
];
/** Attribute values keep their spaces (the shares text of <symbol><account> is trimmed instead). */
const SPACED_DECIMALS: Variant[] = [
  ['a leading space', ' 5'],
  ['a trailing space', '5 '],
];

const BAD_SYMBOLS: Variant[] = [
  ['empty', ''],
  ['a space', 'A B'],
  ['a hyphen', 'A-B'],
  ['a dot', 'A.B'],
  ['an underscore', 'A_B'],
  ['a euro sign', '€'],
  ['Arabic-Indic digits', '١٢٣'],
  ['fullwidth letters', 'ＡＢＣ'],
  ['65 characters', 'S'.repeat(65)],
];

const BAD_ORDER_IDS: Variant[] = [
  ['empty', ''],
  ['zero', '0'],
  ['negative', '-1'],
  ['a plus sign', '+1'],
  ['an exponent', '1e3'],
  ['a decimal point', '1.5'],
  ['letters', 'abc'],
  ['Arabic-Indic digits', '١٢٣'],
  ['beyond bigint', '9223372036854775808'],
  ['65 digits', '9'.repeat(65)],
];

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

const orderEcho = (sym: string, amount: string, limit: string) => ({ sym, amount, limit });

const CASES: Case[] = [
  // --- length lines ---------------------------------------------------------
  {
    name: 'length line of letters',
    wire: () => ['abc\n', `<create><account id="${NEVER}" balance="5"/></create>`],
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'length line with a letter after the digits',
    wire: () => `49x\n<create><account id="${NEVER}" balance="5"/></create>`,
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'negative length',
    wire: () => `-49\n<create><account id="${NEVER}" balance="5"/></create>`,
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'length with a plus sign',
    wire: () => `+49\n<create><account id="${NEVER}" balance="5"/></create>`,
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'length with a decimal point',
    wire: () => `49.0\n<create><account id="${NEVER}" balance="5"/></create>`,
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'length in hexadecimal',
    wire: () => `0x31\n<create><account id="${NEVER}" balance="5"/></create>`,
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'length with an exponent',
    wire: () => `49e0\n<create><account id="${NEVER}" balance="5"/></create>`,
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'length in Arabic-Indic digits',
    wire: () => `٤٩\n<create><account id="${NEVER}" balance="5"/></create>`,
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'a space inside the number',
    wire: () => `4 9\n<create><account id="${NEVER}" balance="5"/></create>`,
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'a tab inside the number',
    wire: () => `4\t9\n<create><account id="${NEVER}" balance="5"/></create>`,
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'a NUL byte before the number',
    wire: () => bytes([0], `49\n<create><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'length of 40 digits (huge digit count)',
    wire: () => `${'9'.repeat(40)}\n<create/>`,
    expect: requestError(/invalid length line: too long|exceeds the maximum/),
  },
  {
    name: 'length of 100 leading zeros then 9',
    wire: () => `${'0'.repeat(100)}9\n<create/>`,
    expect: requestError(/invalid length line: too long/),
  },
  {
    name: '10,000 digits and no newline',
    wire: () => '7'.repeat(10_000),
    expect: requestError(/invalid length line: too long/),
  },
  {
    name: 'length of 20 digits (fits the line, beyond any maximum)',
    wire: () => '99999999999999999999\n<create/>',
    expect: requestError(TOO_LARGE),
  },
  { name: 'length of 2^53 + 1', wire: () => `${2 ** 53 + 1}\n<create/>`, expect: requestError(TOO_LARGE) },
  {
    name: 'length one above the maximum, with body bytes following',
    wire: () => [`${MAX_REQUEST_BYTES + 1}\n`, '<create>'.padEnd(4096, ' ')],
    expect: requestError(TOO_LARGE),
  },
  {
    name: 'only blank lines and spaces, then half-close',
    wire: () => '\r\n \n\t\n   ',
    halfClose: true,
    expect: requestError(/truncated|empty|length/),
  },
  {
    name: 'digits without a newline, then half-close',
    wire: () => '49',
    halfClose: true,
    expect: requestError(TRUNCATED),
  },
  // SPEC: a length line sent twice is tolerated only when the inner value is exactly the bytes after it.
  {
    name: 'length line sent twice, inner value one short',
    wire: () => frame(`${NEVER_BODY_BYTES() - 1}\n${NEVER_BODY}`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'length line sent twice, inner value one over',
    wire: () => frame(`${NEVER_BODY_BYTES() + 1}\n${NEVER_BODY}`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'length line sent twice, inner value counts its own line too',
    wire: () => frame(`${NEVER_BODY_BYTES() + `${NEVER_BODY_BYTES()}\n`.length}\n${NEVER_BODY}`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'length line sent three times (only one is skipped)',
    wire: () => frame(frame(frame(NEVER_BODY)).toString()),
    expect: requestError(MALFORMED),
  },
  { name: 'a body that is only a line of digits', wire: () => frame('12345\n'), expect: requestError(MALFORMED) },
  { name: 'length line of zero (empty body)', wire: () => '0\n', expect: requestError(EMPTY) },
  { name: 'body of only spaces', wire: () => '5\n     ', expect: requestError(EMPTY) },

  // --- truncated and oversized bodies ---------------------------------------
  {
    name: 'body truncated mid-element, then half-close',
    wire: () => `100\n<create><account id="${NEVER}" balance="5"`,
    halfClose: true,
    expect: requestError(TRUNCATED),
  },
  {
    name: 'body truncated after a complete child (root unclosed), then half-close',
    wire: () => `100\n<create><account id="${NEVER}" balance="5"/>`,
    halfClose: true,
    expect: requestError(TRUNCATED),
  },
  {
    name: 'maximum length declared, 1 KiB sent, then half-close',
    wire: () => [`${MAX_REQUEST_BYTES}\n`, `<create>${' '.repeat(1000)}`],
    halfClose: true,
    expect: requestError(TRUNCATED),
  },
  {
    name: 'more bytes than declared: a second request in the extra bytes is never processed (bare)',
    wire: () =>
      Buffer.concat([
        frame(tx(order(SYM, '1e3', '1'))),
        frame(`<create><account id="${NEVER}" balance="5"/></create>`),
      ]),
    expect: itemErrors([orderEcho(SYM, '1e3', '1'), /amount/]),
  },
  {
    name: 'more bytes than declared: declared length cuts the document, the rest is ignored',
    wire: () => {
      const body = `<create><account id="${NEVER}" balance="5"/></create>`;
      return `${body.length - '</create>'.length}\n${body}`;
    },
    expect: requestError(MALFORMED),
  },
  {
    name: 'more bytes than declared: 64 KiB of garbage after the document',
    wire: () => Buffer.concat([frame(tx(order(SYM, '+1', '1'))), Buffer.alloc(65_536, 0x41)]),
    expect: itemErrors([orderEcho(SYM, '+1', '1'), /amount/]),
  },

  // --- malformed XML --------------------------------------------------------
  {
    name: 'unclosed root',
    wire: () => frame(`<create><account id="${NEVER}" balance="5"/>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'mismatched closing tag',
    wire: () => frame(`<create><account id="${NEVER}" balance="5"/></transactions>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'unquoted attribute values',
    wire: () => frame(`<create><account id=${NEVER} balance=5/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'attribute without a value',
    wire: () => frame(`<create><account id="${NEVER}" balance/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'raw "<" inside an attribute value',
    wire: () => frame(`<create><account id="${NEVER}" balance="<5"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'stray "&" in an attribute',
    wire: () => frame(`<create><account id="${NEVER}" balance="5&"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'undefined HTML entity &nbsp;',
    wire: () => frame(`<create><account id="${NEVER}" balance="&nbsp;5"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'two root elements',
    wire: () => frame(`<create><account id="${NEVER}" balance="5"/></create><create/>`),
    expect: requestError(/exactly one root|malformed XML/),
  },
  { name: 'plain text, no markup', wire: () => frame('buy 100 SPY at 125'), expect: requestError(/./) },
  {
    name: 'an XML declaration and nothing else',
    wire: () => frame('<?xml version="1.0" encoding="UTF-8"?>'),
    expect: requestError(/./),
  },
  { name: 'a comment and nothing else', wire: () => frame('<!-- nothing -->'), expect: requestError(/./) },
  {
    name: 'unterminated comment',
    wire: () => frame(`<create><!-- <account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'unterminated CDATA',
    wire: () => frame(`<create><![CDATA[<account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(MALFORMED),
  },
  { name: 'a closing tag with no opening tag', wire: () => frame('</create>'), expect: requestError(/./) },
  {
    name: 'JSON instead of XML',
    wire: () => frame(`{"create":{"account":{"id":"${NEVER}","balance":"5"}}}`),
    expect: requestError(/./),
  },

  // --- not well-formed, though a lax parser reads a request in it ----------------
  {
    name: 'a reference after the root element',
    wire: () => frame(`<create><account id="${NEVER}" balance="5"/></create>&amp;`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'CDATA after the root element',
    wire: () => frame(`<create><account id="${NEVER}" balance="5"/></create><![CDATA[x]]>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'an XML declaration after the root element',
    wire: () => frame(`<create><account id="${NEVER}" balance="5"/></create><?xml version="1.0"?>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'text after the root element',
    wire: () => frame(`<create><account id="${NEVER}" balance="5"/></create>junk`),
    expect: requestError(MALFORMED),
  },
  { name: '<create/> then text', wire: () => frame('<create/>junk'), expect: requestError(MALFORMED) },
  {
    name: '"--" inside a comment',
    wire: () => frame(`<create><!-- a -- b --><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'an XML declaration inside the root',
    wire: () => frame(`<create><?xml version="1.0"?><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'a processing instruction named xml in another case',
    wire: () => frame(`<create><?XML x?><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'an XML declaration after a comment',
    wire: () => frame(`<!-- x --><?xml version="1.0"?><create><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: '"]]>" in text',
    wire: () => frame(`<create>]]><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'an XML declaration without a version',
    wire: () => frame(`<?xml encoding="UTF-8"?><create><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'an XML declaration of UTF-16 over UTF-8 bytes',
    wire: () => frame(`<?xml version="1.0" encoding="UTF-16"?><create><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(/UTF-8/),
  },
  {
    name: 'a reference after the root element (length framing: connection stays usable)',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(`<create><account id="${NEVER}" balance="5"/></create>&amp;`),
    expect: requestError(MALFORMED),
  },
  {
    name: '"--" inside a comment (length framing: connection stays usable)',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(`<create><!----><account id="${NEVER}" balance="5"/><!-- -- --></create>`),
    expect: requestError(MALFORMED),
  },

  // --- DTDs and entities ----------------------------------------------------
  {
    name: 'DOCTYPE without an internal subset',
    wire: () => frame(`<!DOCTYPE create><create><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(NO_DTD),
  },
  {
    name: 'internal ENTITY used in an attribute',
    wire: () => frame(`<!DOCTYPE create [<!ENTITY n "${NEVER}">]><create><account id="&n;" balance="5"/></create>`),
    expect: requestError(NO_DTD),
  },
  { name: 'billion laughs', wire: () => frame(BILLION_LAUGHS), expect: requestError(NO_DTD), maxReplyBytes: 4096 },
  {
    name: 'external entity SYSTEM "file:///etc/passwd"',
    wire: () =>
      frame(
        `<?xml version="1.0"?><!DOCTYPE create [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><create><symbol sym="${SYM}"><account id="${A}">&xxe;</account></symbol></create>`,
      ),
    expect: requestError(NO_DTD),
  },
  {
    name: 'external parameter entity (SYSTEM http URL)',
    wire: () => frame(`<!DOCTYPE create [<!ENTITY % remote SYSTEM "http://127.0.0.1:1/evil.dtd"> %remote;]><create/>`),
    expect: requestError(NO_DTD),
  },
  {
    name: 'lower-case doctype with odd spacing',
    wire: () => frame(`<! doctype create [<!entity a "b">]><create/>`),
    expect: requestError(/DOCTYPE|malformed/),
  },
  {
    name: 'ENTITY declaration hidden after the root',
    wire: () => frame('<create/><!ENTITY a "b">'),
    expect: requestError(/DOCTYPE|malformed/),
  },

  // --- size: nesting, width, near the maximum -------------------------------
  {
    name: '10,000 levels of nesting inside <create>',
    wire: () => frame(`<create>${'<a>'.repeat(10_000)}${'</a>'.repeat(10_000)}</create>`),
    expect: requestError(ANY),
  },
  {
    name: '10,000 levels of nested <transactions>',
    wire: () => frame(`${`<transactions id="${A}">`.repeat(10_000)}${'</transactions>'.repeat(10_000)}`),
    expect: requestError(ANY),
  },
  {
    name: '10,000 levels of nesting, never closed',
    wire: () => frame(`<create>${'<a>'.repeat(10_000)}`),
    expect: requestError(ANY),
    maxReplyBytes: 4096,
  },
  {
    name: '<transactions> with 10,001 children is refused whole',
    wire: () => frame(tx('<query id="1"/>'.repeat(10_001))),
    expect: requestError(TOO_MANY_ITEMS),
  },
  {
    name: '<create> with 10,001 accounts is refused whole (none created)',
    wire: () =>
      frame(
        `<create>${Array.from({ length: 10_001 }, (_, index) => `<account id="${8_900_000 + index}" balance="1"/>`).join('')}</create>`,
      ),
    expect: requestError(TOO_MANY_ITEMS),
  },
  {
    name: '<symbol> with 10,001 accounts is refused whole',
    wire: () =>
      frame(`<create><symbol sym="${SYM}">${`<account id="${A}">1</account>`.repeat(10_001)}</symbol></create>`),
    expect: requestError(TOO_MANY_ITEMS),
  },
  {
    name: '<transactions> with 5,000 invalid orders gets 5,000 item errors',
    wire: () => frame(tx(order(SYM, '1e3', '1').repeat(5_000))),
    expect: {
      items: Array.from({ length: 5_000 }, () => ({ attributes: orderEcho(SYM, '1e3', '1'), text: /amount/ })),
    },
  },
  {
    name: '<transactions> with 3,000 unknown children gets 3,000 item errors',
    wire: () => frame(tx('<buy sym="X"/>'.repeat(3_000))),
    expect: { items: Array.from({ length: 3_000 }, () => ({ attributes: {}, text: /unknown element/ })) },
  },
  {
    name: 'document of exactly the maximum size (1 MiB) with one invalid order',
    wire: () => frame(paddedTransactions(MAX_REQUEST_BYTES)),
    expect: itemErrors([orderEcho(SYM, '+1', '1'), /amount/]),
  },
  {
    name: '1 MiB of unclosed markup',
    wire: () => frame(`<create>${'<account id="1" balance="1">'.repeat(Math.floor((MAX_REQUEST_BYTES - 8) / 28))}`),
    expect: requestError(ANY),
    maxReplyBytes: 4096,
  },
  {
    name: '1 MiB of garbage bytes (no markup)',
    wire: () => frame(Buffer.alloc(MAX_REQUEST_BYTES, 0x5a)),
    expect: requestError(ANY),
    maxReplyBytes: 4096,
  },
  {
    name: '100,000 levels of nesting (700 KB)',
    wire: () => frame(`<create>${'<a>'.repeat(100_000)}${'</a>'.repeat(100_000)}</create>`),
    expect: requestError(ANY),
    maxReplyBytes: 4096,
  },
  {
    name: '50,000 unknown attributes on one <order> (refused whole at the 17th)',
    wire: () =>
      frame(
        tx(
          `<order sym="${SYM}" amount="1" limit="1" ${Array.from({ length: 50_000 }, (_, index) => `a${index}="x"`).join(' ')}/>`,
        ),
      ),
    expect: requestError(TOO_MANY_ATTRIBUTES),
    maxReplyBytes: 4096,
  },
  {
    name: '90,000 attributes on one element (1 MiB)',
    wire: () => frame(tx(`<order ${Array.from({ length: 90_000 }, (_, index) => `a${index}="x"`).join(' ')}/>`)),
    expect: requestError(TOO_MANY_ATTRIBUTES),
    maxReplyBytes: 4096,
  },
  {
    name: '17 attributes on <order>',
    wire: () =>
      frame(
        tx(
          `<order sym="${SYM}" amount="1" limit="1"${Array.from({ length: 14 }, (_, index) => ` a${index}="x"`).join('')}/>`,
        ),
      ),
    expect: requestError(TOO_MANY_ATTRIBUTES),
  },
  {
    name: '17 attributes on the root <transactions>',
    wire: () =>
      frame(
        `<transactions id="${A}"${Array.from({ length: 16 }, (_, index) => ` a${index}="x"`).join('')}>${order(SYM, '1', '1')}</transactions>`,
      ),
    expect: requestError(TOO_MANY_ATTRIBUTES),
  },
  {
    name: '17 attributes on an element nested in <create><symbol><account>',
    wire: () =>
      frame(
        `<create><symbol sym="${SYM}"><account id="${A}">5<x${Array.from({ length: 17 }, (_, index) => ` a${index}="x"`).join('')}/></account></symbol></create>`,
      ),
    expect: requestError(TOO_MANY_ATTRIBUTES),
  },
  {
    name: '20,001 empty elements inside one <order>',
    wire: () => frame(tx(`<order sym="${SYM}" amount="1" limit="1">${'<a/>'.repeat(20_001)}</order>`)),
    expect: requestError(TOO_MANY_ELEMENTS),
    maxReplyBytes: 4096,
  },
  {
    name: '260,000 empty elements inside one <order> (1 MiB)',
    wire: () => frame(tx(`<order>${'<a/>'.repeat(260_000)}</order>`)),
    expect: requestError(TOO_MANY_ELEMENTS),
    maxReplyBytes: 4096,
  },
  {
    name: '<create> with 10,001 accounts in two <symbol>s',
    wire: () =>
      frame(
        `<create><symbol sym="${SYM}">${`<account id="${NEVER}">1</account>`.repeat(5_000)}</symbol><symbol sym="${SYM}">${`<account id="${NEVER}">1</account>`.repeat(5_001)}</symbol></create>`,
      ),
    expect: requestError(TOO_MANY_ITEMS),
    maxReplyBytes: 4096,
  },
  {
    name: '<create> with 10,001 empty <symbol>s',
    wire: () => frame(`<create>${`<symbol sym="${SYM}"/>`.repeat(10_001)}</create>`),
    expect: requestError(TOO_MANY_ITEMS),
    maxReplyBytes: 4096,
  },
  {
    name: '17 levels of nesting',
    wire: () => frame(`<create>${'<a>'.repeat(16)}${'</a>'.repeat(16)}</create>`),
    expect: requestError(TOO_DEEP),
  },
  {
    name: 'an attribute name of 900,000 characters',
    wire: () => frame(tx(`<order sym="${SYM}" amount="1" limit="1" ${'a'.repeat(900_000)}="x"/>`)),
    expect: itemErrors([orderEcho(SYM, '1', '1'), /unexpected attribute/]),
  },
  {
    name: 'an element name of 900,000 characters as root',
    wire: () => frame(`<${'c'.repeat(900_000)}/>`),
    expect: requestError(WRONG_ROOT),
    maxReplyBytes: 4096,
  },
  {
    name: '900,000 "<" characters',
    wire: () => frame(`<create>${'<'.repeat(900_000)}`),
    expect: requestError(MALFORMED),
    maxReplyBytes: 4096,
  },
  {
    name: 'an attribute quote never closed (900 KB)',
    wire: () => frame(`<create><account id="${NEVER}" balance="${'5'.repeat(900_000)}`),
    expect: requestError(MALFORMED),
    maxReplyBytes: 4096,
  },
  {
    name: 'a sym of ~1,000,000 characters (echoed, refused)',
    wire: () => frame(tx(order('S'.repeat(1_000_000), '1', '1'))),
    expect: itemErrors([orderEcho('S'.repeat(1_000_000), '1', '1'), /sym longer/]),
  },

  // --- encoding and characters ----------------------------------------------
  {
    name: 'invalid UTF-8: byte 0xFF in an attribute',
    wire: () => frame(bytes(`<create><account id="${NEVER}" balance="5`, [0xff], '"/></create>')),
    expect: requestError(NOT_UTF8),
  },
  {
    name: 'invalid UTF-8: overlong encoding of "/" (C0 AF)',
    wire: () => frame(bytes(`<create><account id="${NEVER}" balance="5"`, [0xc0, 0xaf], '></create>')),
    expect: requestError(NOT_UTF8),
  },
  {
    name: 'invalid UTF-8: encoded surrogate U+D800 (ED A0 80)',
    wire: () => frame(bytes(`<create><account id="${NEVER}" balance="5"/>`, [0xed, 0xa0, 0x80], '</create>')),
    expect: requestError(NOT_UTF8),
  },
  {
    name: 'invalid UTF-8: code point above U+10FFFF (F4 90 80 80)',
    wire: () => frame(bytes(`<create><account id="${NEVER}" balance="5"/>`, [0xf4, 0x90, 0x80, 0x80], '</create>')),
    expect: requestError(NOT_UTF8),
  },
  {
    name: 'invalid UTF-8: lone continuation byte',
    wire: () => frame(bytes('<create>', [0x80], '</create>')),
    expect: requestError(NOT_UTF8),
  },
  {
    name: 'invalid UTF-8: multi-byte sequence cut at the end of the body',
    wire: () => frame(bytes(`<create><account id="${NEVER}" balance="5"/></create>`, [0xe2, 0x82])),
    expect: requestError(NOT_UTF8),
  },
  {
    name: 'declared ISO-8859-1 with a Latin-1 byte (only UTF-8 is accepted)',
    wire: () =>
      frame(
        bytes(
          `<?xml version="1.0" encoding="ISO-8859-1"?><create><symbol sym="CAF`,
          [0xc9],
          `"><account id="${A}">1</account></symbol></create>`,
        ),
      ),
    expect: requestError(NOT_UTF8),
  },
  {
    name: 'UTF-16 encoded body',
    wire: () => frame(Buffer.from(`<create><account id="${NEVER}" balance="5"/></create>`, 'utf16le')),
    expect: requestError(ANY),
  },
  {
    name: 'raw NUL character in an attribute',
    wire: () => frame(`<create><account id="${NEVER}" balance="5\u0000"/></create>`),
    expect: requestError(FORBIDDEN_CHARACTER),
  },
  {
    name: 'raw control character U+0001 between elements',
    wire: () => frame(`<create>\u0001<account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(FORBIDDEN_CHARACTER),
  },
  {
    name: 'raw escape character U+001B in a sym',
    wire: () => frame(tx(order('\u001b[31m', '1', '1'))),
    expect: requestError(FORBIDDEN_CHARACTER),
  },
  {
    name: 'raw U+FFFE (a non-character XML forbids)',
    wire: () => frame(`<create><account id="${NEVER}" balance="5\uFFFE"/></create>`),
    expect: requestError(FORBIDDEN_CHARACTER),
  },
  {
    name: 'character reference &#0;',
    wire: () => frame(`<create><account id="${NEVER}" balance="5&#0;"/></create>`),
    expect: requestError(FORBIDDEN_CHARACTER),
  },
  {
    name: 'character reference &#x1;',
    wire: () => frame(`<create><account id="${NEVER}" balance="&#x1;5"/></create>`),
    expect: requestError(FORBIDDEN_CHARACTER),
  },
  {
    name: 'character reference to a surrogate &#xD800;',
    wire: () => frame(`<create><account id="${NEVER}" balance="&#xD800;"/></create>`),
    expect: requestError(FORBIDDEN_CHARACTER),
  },
  {
    name: 'character reference beyond Unicode &#x110000;',
    wire: () => frame(`<create><account id="${NEVER}" balance="&#x110000;"/></create>`),
    expect: requestError(FORBIDDEN_CHARACTER),
  },
  {
    name: 'character reference with 30 digits',
    wire: () => frame(`<create><account id="${NEVER}" balance="&#${'9'.repeat(30)};"/></create>`),
    expect: requestError(FORBIDDEN_CHARACTER),
  },

  // --- roots ------------------------------------------------------------------
  {
    name: 'root <results> (a reply sent back as a request)',
    wire: () => frame(`<results><created id="${NEVER}"/></results>`),
    expect: requestError(WRONG_ROOT),
  },
  {
    name: 'root <Create> (wrong case)',
    wire: () => frame(`<Create><account id="${NEVER}" balance="5"/></Create>`),
    expect: requestError(WRONG_ROOT),
  },
  {
    name: 'root <order> (a child used as root)',
    wire: () => frame(order(SYM, '1', '1')),
    expect: requestError(WRONG_ROOT),
  },
  {
    name: 'root <account>',
    wire: () => frame(`<account id="${NEVER}" balance="5"/>`),
    expect: requestError(WRONG_ROOT),
  },
  {
    name: 'namespaced root <ex:create>',
    wire: () => frame(`<ex:create xmlns:ex="urn:exchange"><account id="${NEVER}" balance="5"/></ex:create>`),
    expect: requestError(WRONG_ROOT),
  },
  {
    name: 'namespaced root <ex:transactions>',
    wire: () => frame(`<ex:transactions xmlns:ex="urn:exchange" id="${A}">${order(SYM, '1', '1')}</ex:transactions>`),
    expect: requestError(WRONG_ROOT),
  },
  {
    name: '<create> with a default namespace',
    wire: () => frame(`<create xmlns="urn:evil"><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(/unexpected attribute 'xmlns'/),
  },
  {
    name: '<create> with an unknown attribute',
    wire: () => frame(`<create admin="true"><account id="${NEVER}" balance="5"/></create>`),
    expect: requestError(/unexpected attribute/),
  },
  {
    name: '<transactions> with a default namespace: every child refused',
    wire: () => frame(`<transactions xmlns="urn:evil" id="${A}">${order(SYM, '1', '1')}<query id="1"/></transactions>`),
    expect: itemErrors([orderEcho(SYM, '1', '1'), /unexpected attribute/], [{ id: '1' }, /unexpected attribute/]),
  },
  {
    name: '<transactions> with an unknown attribute: every child refused',
    wire: () => frame(`<transactions id="${A}" as="${B}">${order(SYM, '1', '1')}</transactions>`),
    expect: itemErrors([orderEcho(SYM, '1', '1'), /unexpected attribute/]),
  },
  {
    name: '<transactions> without an id: every child refused',
    wire: () => frame(`<transactions>${order(SYM, '1', '1')}<cancel id="1"/></transactions>`),
    expect: itemErrors([orderEcho(SYM, '1', '1'), /missing account id/], [{ id: '1' }, /missing account id/]),
  },
  {
    name: '<transactions> for an account that does not exist',
    wire: () => frame(tx(`${order(SYM, '1', '1')}<query id="1"/>`, NEVER)),
    expect: itemErrors([orderEcho(SYM, '1', '1'), /unknown account/], [{ id: '1' }, /unknown account/]),
  },
  { name: '<transactions> with no children, account exists', wire: () => frame(tx('')), expect: itemErrors() },
  {
    name: '<transactions> with no children, unknown account',
    wire: () => frame(tx('', NEVER)),
    expect: itemErrors([{ id: NEVER }, /unknown account/]),
  },
  {
    name: '<transactions> nested in <transactions>',
    wire: () => frame(tx(tx(order(SYM, '1', '1')))),
    expect: itemErrors([{}, /unknown element <transactions>/]),
  },
  {
    name: 'namespaced child <x:account> in <create>',
    wire: () => frame(`<create><x:account id="${NEVER}" balance="5"/></create>`),
    expect: itemErrors([{}, /unknown element/]),
  },

  // --- duplicated, unknown, missing attributes; unknown children; text -------
  {
    name: 'duplicated id on <account>',
    wire: () => frame(`<create><account id="${NEVER}" id="${A}" balance="5"/></create>`),
    expect: requestError(/repeated|malformed/),
  },
  {
    name: 'duplicated amount on <order>',
    wire: () => frame(tx(`<order sym="${SYM}" amount="1" amount="-1" limit="1"/>`)),
    expect: requestError(/repeated|malformed/),
  },
  {
    name: 'duplicated id on <transactions>',
    wire: () => frame(`<transactions id="${A}" id="${B}">${order(SYM, '1', '1')}</transactions>`),
    expect: requestError(/repeated|malformed/),
  },
  {
    name: 'duplicated id on <cancel>',
    wire: () => frame(tx('<cancel id="1" id="2"/>')),
    expect: requestError(/repeated|malformed/),
  },
  {
    name: 'unknown attribute on <account> in <create>',
    wire: () => frame(`<create><account id="${NEVER}" balance="5" admin="true"/></create>`),
    expect: itemErrors([{ id: NEVER }, /unexpected attribute/]),
  },
  {
    name: 'unknown attribute on <account> in <symbol>',
    wire: () => frame(`<create><symbol sym="${SYM}"><account id="${A}" bonus="1">5</account></symbol></create>`),
    expect: itemErrors([{ sym: SYM, id: A }, /unexpected attribute/]),
  },
  {
    name: 'unknown attribute on <symbol>',
    wire: () => frame(`<create><symbol sym="${SYM}" owner="${A}"><account id="${A}">5</account></symbol></create>`),
    expect: itemErrors([{ sym: SYM, id: A }, /unexpected attribute/]),
  },
  {
    name: 'unknown attribute on <order>',
    wire: () => frame(tx(`<order sym="${SYM}" amount="1" limit="1" account="${B}"/>`)),
    expect: itemErrors([orderEcho(SYM, '1', '1'), /unexpected attribute/]),
  },
  {
    name: 'unknown attribute on <query>',
    wire: () => frame(tx('<query id="1" account="880002"/>')),
    expect: itemErrors([{ id: '1' }, /unexpected attribute/]),
  },
  {
    name: 'unknown attribute on <cancel>',
    wire: () => frame(tx('<cancel id="1" force="yes"/>')),
    expect: itemErrors([{ id: '1' }, /unexpected attribute/]),
  },
  {
    name: '<account> in <create> without a balance',
    wire: () => frame(`<create><account id="${NEVER}"/></create>`),
    expect: itemErrors([{ id: NEVER }, /missing balance/]),
  },
  {
    name: '<account> in <create> without an id',
    wire: () => frame('<create><account balance="5"/></create>'),
    expect: itemErrors([{}, /missing account id/]),
  },
  {
    name: '<symbol> without a sym',
    wire: () => frame(`<create><symbol><account id="${A}">5</account></symbol></create>`),
    expect: itemErrors([{ id: A }, /missing sym/]),
  },
  {
    name: '<symbol> with no <account>',
    wire: () => frame(`<create><symbol sym="${SYM}"/></create>`),
    expect: itemErrors([{ sym: SYM }, /at least one/]),
  },
  {
    name: '<account> in <symbol> without shares',
    wire: () => frame(`<create><symbol sym="${SYM}"><account id="${A}"></account></symbol></create>`),
    expect: itemErrors([{ sym: SYM, id: A }, /missing number of shares/]),
  },
  {
    name: '<order> missing sym',
    wire: () => frame(tx('<order amount="1" limit="1"/>')),
    expect: itemErrors([{ amount: '1', limit: '1' }, /missing sym/]),
  },
  {
    name: '<order> missing amount',
    wire: () => frame(tx(`<order sym="${SYM}" limit="1"/>`)),
    expect: itemErrors([{ sym: SYM, limit: '1' }, /missing amount/]),
  },
  {
    name: '<order> missing limit',
    wire: () => frame(tx(`<order sym="${SYM}" amount="1"/>`)),
    expect: itemErrors([{ sym: SYM, amount: '1' }, /missing limit/]),
  },
  { name: '<order> with no attributes at all', wire: () => frame(tx('<order/>')), expect: itemErrors([{}, /missing/]) },
  { name: '<query> without an id', wire: () => frame(tx('<query/>')), expect: itemErrors([{}, /missing id/]) },
  { name: '<cancel> without an id', wire: () => frame(tx('<cancel/>')), expect: itemErrors([{}, /missing id/]) },
  {
    name: 'unknown child <bogus> in <create>',
    wire: () => frame(`<create><bogus id="${NEVER}" balance="5"/></create>`),
    expect: itemErrors([{}, /unknown element <bogus>/]),
  },
  {
    name: 'unknown child <transactions> in <create>',
    wire: () => frame(`<create>${tx(order(SYM, '1', '1'))}</create>`),
    expect: itemErrors([{}, /unknown element <transactions>/]),
  },
  {
    name: 'unknown child <shares> in <symbol>',
    wire: () => frame(`<create><symbol sym="${SYM}"><shares id="${A}">5</shares></symbol></create>`),
    expect: itemErrors([{ sym: SYM, id: A }, /unknown element <shares>/]),
  },
  {
    name: 'unknown child <buy> in <transactions>',
    wire: () => frame(tx(`<buy sym="${SYM}" amount="1" limit="1"/>`)),
    expect: itemErrors([{}, /unknown element <buy>/]),
  },
  {
    name: 'child element inside <order>',
    wire: () =>
      frame(tx(`<order sym="${SYM}" amount="1" limit="1"><order sym="${SYM}" amount="1" limit="1"/></order>`)),
    expect: itemErrors([orderEcho(SYM, '1', '1'), /takes no children/]),
  },
  {
    name: 'child element inside <account> in <create>',
    wire: () =>
      frame(`<create><account id="${NEVER}" balance="5"><account id="${NEVER}" balance="6"/></account></create>`),
    expect: itemErrors([{ id: NEVER }, /takes no children/]),
  },
  {
    name: 'child element beside the shares in <symbol><account>',
    wire: () => frame(`<create><symbol sym="${SYM}"><account id="${A}">5<b>6</b></account></symbol></create>`),
    expect: itemErrors([{ sym: SYM, id: A }, /only a number/]),
  },
  {
    name: 'text inside <order>',
    wire: () => frame(tx(`<order sym="${SYM}" amount="1" limit="1">buy it all</order>`)),
    expect: itemErrors([orderEcho(SYM, '1', '1'), ANY]),
  },
  {
    name: 'text inside <query>',
    wire: () => frame(tx(`<query id="1">all of them</query>`)),
    expect: itemErrors([{ id: '1' }, ANY]),
  },
  {
    name: 'text inside <account> in <create>',
    wire: () => frame(`<create><account id="${NEVER_TOO}" balance="5">1000000</account></create>`),
    expect: itemErrors([{ id: NEVER_TOO }, ANY]),
  },

  // --- every attribute invalid in every way (generated) ----------------------
  ...BAD_ACCOUNT_IDS.map(
    ([label, value]): Case => ({
      name: `<create><account> id ${label} (${JSON.stringify(value.slice(0, 12))})`,
      wire: () => frame(`<create><account id="${value}" balance="5"/></create>`),
      expect: itemErrors([{ id: value }, /account id/]),
    }),
  ),
  ...[...BAD_DECIMALS, ...SPACED_DECIMALS, ['negative', '-1'] as Variant].map(
    ([label, value]): Case => ({
      name: `<create><account> balance ${label} (${JSON.stringify(value.slice(0, 12))})`,
      wire: () => frame(`<create><account id="${NEVER}" balance="${value}"/></create>`),
      expect: itemErrors([{ id: NEVER }, /balance/]),
    }),
  ),
  ...BAD_SYMBOLS.map(
    ([label, value]): Case => ({
      name: `<create><symbol> sym ${label} (${JSON.stringify(value.slice(0, 12))})`,
      wire: () => frame(`<create><symbol sym="${value}"><account id="${A}">5</account></symbol></create>`),
      expect: itemErrors([{ sym: value, id: A }, /sym/]),
    }),
  ),
  ...BAD_ACCOUNT_IDS.map(
    ([label, value]): Case => ({
      name: `<create><symbol><account> id ${label} (${JSON.stringify(value.slice(0, 12))})`,
      wire: () => frame(`<create><symbol sym="${SYM}"><account id="${value}">5</account></symbol></create>`),
      expect: itemErrors([{ sym: SYM, id: value }, /account id/]),
    }),
  ),
  ...[
    ...BAD_DECIMALS.filter(([, value]) => value !== ''),
    ['minus zero', '-0'] as Variant,
    ['zero', '0'] as Variant,
    ['negative', '-3'] as Variant,
  ].map(
    ([label, value]): Case => ({
      name: `<create><symbol><account> shares ${label} (${JSON.stringify(value.slice(0, 12))})`,
      wire: () => frame(`<create><symbol sym="${SYM}"><account id="${A}">${value}</account></symbol></create>`),
      expect: itemErrors([{ sym: SYM, id: A }, /shares/]),
    }),
  ),
  ...BAD_ACCOUNT_IDS.map(
    ([label, value]): Case => ({
      name: `<transactions> id ${label} (${JSON.stringify(value.slice(0, 12))}): every child refused`,
      wire: () => frame(tx(`${order(SYM, '1', '1')}<query id="1"/><cancel id="1"/>`, value)),
      expect: itemErrors(
        [orderEcho(SYM, '1', '1'), /account id/],
        [{ id: '1' }, /account id/],
        [{ id: '1' }, /account id/],
      ),
    }),
  ),
  ...BAD_SYMBOLS.map(
    ([label, value]): Case => ({
      name: `<order> sym ${label} (${JSON.stringify(value.slice(0, 12))})`,
      wire: () => frame(tx(order(value, '1', '1'))),
      expect: itemErrors([orderEcho(value, '1', '1'), /sym/]),
    }),
  ),
  ...[
    ...BAD_DECIMALS,
    ...SPACED_DECIMALS,
    ['minus zero', '-0'] as Variant,
    ['zero', '0'] as Variant,
    ['zero with decimals', '0.000'] as Variant,
  ].map(
    ([label, value]): Case => ({
      name: `<order> amount ${label} (${JSON.stringify(value.slice(0, 12))})`,
      wire: () => frame(tx(order(SYM, value, '1'))),
      expect: itemErrors([orderEcho(SYM, value, '1'), /amount/]),
    }),
  ),
  ...[
    ...BAD_DECIMALS,
    ...SPACED_DECIMALS,
    ['minus zero', '-0'] as Variant,
    ['zero', '0'] as Variant,
    ['negative', '-1'] as Variant,
  ].map(
    ([label, value]): Case => ({
      name: `<order> limit ${label} (${JSON.stringify(value.slice(0, 12))})`,
      wire: () => frame(tx(order(SYM, '1', value))),
      expect: itemErrors([orderEcho(SYM, '1', value), /limit/]),
    }),
  ),
  ...BAD_ORDER_IDS.flatMap(([label, value]): Case[] =>
    ['query', 'cancel'].map((kind) => ({
      name: `<${kind}> id ${label} (${JSON.stringify(value.slice(0, 12))}) is answered like an unknown id`,
      wire: () => frame(tx(`<${kind} id="${value}"/>`)),
      expect: itemErrors([{ id: value }, ERROR_MESSAGES.unknown_order]),
    })),
  ),

  // --- length framing ---------------------------------------------------------
  {
    name: 'length framing: length line of letters closes the connection',
    framing: 'length',
    staysOpen: false,
    wire: () => 'abc\n<create/>',
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'length framing: length above the maximum closes the connection',
    framing: 'length',
    staysOpen: false,
    wire: () => `${MAX_REQUEST_BYTES + 1}\n<create/>`,
    expect: requestError(TOO_LARGE),
  },
  {
    name: 'length framing: a space inside the number closes the connection',
    framing: 'length',
    staysOpen: false,
    wire: () => '1 0\n<create/>',
    expect: requestError(INVALID_LENGTH),
  },
  {
    name: 'length framing: malformed XML leaves the connection usable',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(`<create><account id="${NEVER}" balance="5"></create>`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'length framing: billion laughs leaves the connection usable',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(BILLION_LAUGHS),
    expect: requestError(NO_DTD),
  },
  {
    name: 'length framing: external entity leaves the connection usable',
    framing: 'length',
    staysOpen: true,
    wire: () =>
      frame(
        `<!DOCTYPE create [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><create><account id="&xxe;" balance="5"/></create>`,
      ),
    expect: requestError(NO_DTD),
  },
  {
    name: 'length framing: invalid UTF-8 leaves the connection usable',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(bytes('<create>', [0xff, 0xfe], '</create>')),
    expect: requestError(NOT_UTF8),
  },
  {
    name: 'length framing: 10,000 levels of nesting leave the connection usable',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(`<create>${'<a>'.repeat(10_000)}${'</a>'.repeat(10_000)}</create>`),
    expect: requestError(ANY),
  },
  {
    name: 'length framing: length line sent twice with a mismatched inner value leaves the connection usable',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(`${NEVER_BODY_BYTES() + 1}\n${NEVER_BODY}`),
    expect: requestError(MALFORMED),
  },
  {
    name: 'length framing: wrong root leaves the connection usable',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(`<results><created id="${NEVER}"/></results>`),
    expect: requestError(WRONG_ROOT),
  },
  {
    name: 'length framing: 10,001 children leave the connection usable',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(tx('<query id="1"/>'.repeat(10_001))),
    expect: requestError(TOO_MANY_ITEMS),
  },
  {
    name: 'length framing: invalid amount leaves the connection usable',
    framing: 'length',
    staysOpen: true,
    wire: () => frame(tx(order(SYM, '1e3', '1'))),
    expect: itemErrors([orderEcho(SYM, '1e3', '1'), /amount/]),
  },
];

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

type Snapshot = Record<string, string>;

async function snapshot(server: { pool: pg.Pool }): Promise<Snapshot> {
  const result = await server.pool.query<Snapshot>(`SELECT
      (SELECT count(*) FROM accounts)::text AS accounts,
      (SELECT coalesce(sum(balance), 0) FROM accounts)::text AS balances,
      (SELECT count(*) FROM symbols)::text AS symbols,
      (SELECT count(*) FROM positions)::text AS positions,
      (SELECT coalesce(sum(shares), 0) FROM positions)::text AS position_shares,
      (SELECT count(*) FROM orders)::text AS orders,
      (SELECT coalesce(sum(amount), 0) FROM orders)::text AS order_amounts,
      (SELECT coalesce(sum(open_shares), 0) FROM orders)::text AS open_shares,
      (SELECT coalesce(sum(canceled_shares), 0) FROM orders)::text AS canceled_shares,
      (SELECT count(*) FROM executions)::text AS executions,
      (SELECT coalesce(sum(shares), 0) FROM executions)::text AS executed_shares,
      (SELECT coalesce(sum(shares * price), 0) FROM executions)::text AS executed_value`);
  return result.rows[0] as Snapshot;
}

/**
 * The support parser (tests/support/xml.ts) trims attribute values; echoes such as amount=" 5"
 * must be compared exactly, so attributes are read again without trimming.
 */
const exactParser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseAttributeValue: false,
  parseTagValue: false,
  ignoreDeclaration: true,
  trimValues: false,
});

function exactResultAttributes(xml: string): Array<Record<string, string>> {
  const roots = exactParser.parse(xml) as Array<Record<string, unknown>>;
  const root = roots.find((node) => 'results' in node);
  const children = (root?.results as Array<Record<string, unknown>> | undefined) ?? [];
  return children
    .filter((child) => Object.keys(child).some((key) => key !== ':@' && key !== '#text'))
    .map((child) => (child[':@'] as Record<string, string> | undefined) ?? {});
}

function describeNode(node: ReplyNode | undefined): string {
  return JSON.stringify(node, (_key, value: unknown) =>
    typeof value === 'string' && value.length > 200 ? `${value.slice(0, 200)}...` : value,
  );
}

/** Asserts the reply is one well-formed <results> document with exactly the expected errors. */
function checkReply(reply: string, expected: Expectation, maxReplyBytes?: number): void {
  const preview = reply.length > 600 ? `${reply.slice(0, 600)}...` : reply;
  expect(reply.startsWith('<?xml'), `reply must start with <?xml: ${JSON.stringify(preview)}`).to.equal(true);
  expect(reply.split('<?xml').length - 1, `exactly one document: ${preview}`).to.equal(1);
  expect(XMLValidator.validate(reply), `reply must be well-formed: ${preview}`).to.equal(true);
  if (maxReplyBytes !== undefined) expect(Buffer.byteLength(reply), 'reply stays small').to.be.at.most(maxReplyBytes);
  const nodes = parseResults(reply);
  const exactAttributes = exactResultAttributes(reply);
  const items = 'request' in expected ? [{ attributes: {}, text: expected.request }] : expected.items;
  expect(nodes.length, `number of results in ${preview}`).to.equal(items.length);
  items.forEach((item, index) => {
    const node = nodes[index] as ReplyNode;
    expect(node.name, `result ${index} must be <error>: ${describeNode(node)}`).to.equal('error');
    expect(exactAttributes[index], `result ${index} attributes, exactly as sent`).to.deep.equal(item.attributes);
    expect(node.children, `result ${index} has no children`).to.deep.equal([]);
    expect(node.text.trim(), `result ${index} says why`).to.not.equal('');
    if (typeof item.text === 'string') expect(node.text).to.equal(item.text);
    else expect(node.text, `result ${index} reason`).to.match(item.text);
  });
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

/** A server under test in one framing, and a pool on its database (for snapshots). */
type Endpoint = { port: number; pool: pg.Pool };
type Servers = { bare: Endpoint; framed: Endpoint; close: () => Promise<void> };

/** One process, no cache: the servers run in this test process. */
async function inProcessServers(): Promise<Servers> {
  const bare = await startTestServer({ framing: 'bare', maxRequestBytes: MAX_REQUEST_BYTES });
  const framed = await startTestServer({
    framing: 'length',
    database: bare.database,
    maxRequestBytes: MAX_REQUEST_BYTES,
  });
  return {
    bare,
    framed,
    close: async () => {
      await framed.close();
      await bare.close();
    },
  };
}

/** The real server, two worker processes each, with the Redis cache, in both framings on one database. */
async function workerProcessServers(): Promise<Servers> {
  const database = await createTestDatabase();
  const pool = createPool({ databaseUrl: database.url, maxConnections: 2 });
  const env = {
    DATABASE_URL: database.url,
    REDIS_URL: SHARED_REDIS_URL,
    WORKERS: '2',
    MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES),
    REQUEST_TIMEOUT_MS: '5000',
    IDLE_TIMEOUT_MS: '30000',
    LOG_LEVEL: 'info',
  };
  const bare = await startServerProcess({ ...env, REPLY_FRAMING: 'bare' });
  const framed = await startServerProcess({ ...env, REPLY_FRAMING: 'length' });
  return {
    bare: { port: bare.port, pool },
    framed: { port: framed.port, pool },
    close: async () => {
      await framed.stop();
      await bare.stop();
      await pool.end();
      await database.drop();
    },
  };
}

for (const [variant, startServers] of [
  ['one in-process server, no cache', inProcessServers],
  ['two worker processes with the Redis cache', workerProcessServers],
] as const)
  describe(`hostile and broken input (real socket, database unchanged, server keeps serving): ${variant}`, function () {
    this.timeout(60_000);
    let servers: Servers;
    let bare: Endpoint;
    let framed: Endpoint;

    /** A normal request the server must still answer: A's open buy, read back. */
    const healthRequest = (): string => tx(`<query id="${openBuyId}"/>`);

    function checkHealthy(reply: string): void {
      const nodes = parseResults(reply);
      expect(
        nodes.map((node) => node.name),
        `healthy reply: ${reply}`,
      ).to.deep.equal(['status']);
      expect(nodes[0]?.attributes).to.deep.equal({ id: openBuyId });
      expect(nodes[0]?.children[0]).to.deep.include({ name: 'open', attributes: { shares: '8' } });
    }

    before(async () => {
      servers = await startServers();
      ({ bare, framed } = servers);
      const setup = async (xml: string): Promise<ReplyNode[]> => {
        const nodes = parseResults(await sendRequest(bare.port, xml));
        for (const node of nodes) expect(node.name, `setup: ${xml}`).to.not.equal('error');
        return nodes;
      };
      await setup(
        `<create><account id="${A}" balance="1000000"/><account id="${B}" balance="0"/>` +
          `<symbol sym="${SYM}"><account id="${A}">1000</account><account id="${B}">500</account></symbol></create>`,
      );
      openBuyId = (await setup(tx(order(SYM, '10', '5'))))[0]?.attributes.id as string;
      await setup(tx(`${order(SYM, '-2', '5')}${order(SYM, '-5', '6')}`, B));
      // A's buy is now open for 8 (2 filled), B has a resting sell of 5.
      checkHealthy(await sendRequest(bare.port, healthRequest()));
    });

    after(async () => {
      await servers?.close();
    });

    it(`has at least 50 cases (${CASES.length})`, () => {
      expect(CASES.length).to.be.at.least(50);
      expect(new Set(CASES.map((c) => c.name)).size, 'case names are unique').to.equal(CASES.length);
    });

    for (const testCase of CASES) {
      // HOSTILE_RUN_DEFECTS=1 runs the skipped defect cases too (they fail until the server is fixed).
      const define = testCase.defect && !process.env.HOSTILE_RUN_DEFECTS ? it.skip : it;
      define(testCase.defect ? `${testCase.name} [DEFECT: ${testCase.defect}]` : testCase.name, async () => {
        const before = await snapshot(bare);
        if ((testCase.framing ?? 'bare') === 'bare') {
          const reply = await sendRaw(bare.port, testCase.wire(), {
            halfClose: testCase.halfClose === true,
            timeoutMs: 15_000,
          });
          checkReply(reply, testCase.expect, testCase.maxReplyBytes);
        } else {
          const client = await LengthClient.connect(framed.port);
          try {
            const wire = testCase.wire();
            const reply = await client.sendRaw(
              Array.isArray(wire) ? Buffer.concat(wire.map((part) => Buffer.from(part))) : wire,
            );
            checkReply(reply, testCase.expect, testCase.maxReplyBytes);
            if (testCase.staysOpen) {
              checkHealthy(await client.send(healthRequest()));
            } else {
              const next = await client.send(healthRequest()).then(
                () => 'answered',
                (error: Error) => error.message,
              );
              expect(next, 'the connection is closed after a framing error').to.equal('connection closed');
            }
          } finally {
            client.close();
          }
          const other = await LengthClient.connect(framed.port);
          try {
            checkHealthy(await other.send(healthRequest()));
          } finally {
            other.close();
          }
        }
        checkHealthy(await sendRequest(bare.port, healthRequest()));
        expect(await snapshot(bare), 'database unchanged').to.deep.equal(before);
      });
    }
  });
