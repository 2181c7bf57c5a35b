import { expect } from 'chai';
import {
  isCompleteDocument,
  parseRequest,
  parseRequestInSlices,
  MAX_ATTRIBUTES_PER_ELEMENT,
  MAX_ELEMENTS_PER_REQUEST,
  MAX_ITEMS_PER_REQUEST,
  MAX_NESTING,
} from '../../server/protocol/parse-request.js';
import type { CreateRequest, Request, TransactionsRequest } from '../../server/protocol/requests.js';

type Parsed = Request | { kind: 'error'; message: string };

function parse(xml: string | Buffer): Parsed {
  return parseRequest(typeof xml === 'string' ? Buffer.from(xml, 'utf8') : xml);
}

function create(xml: string): CreateRequest {
  const result = parse(xml);
  if (result.kind !== 'create') throw new Error(`expected <create>, got ${JSON.stringify(result)}`);
  return result;
}

function transactions(xml: string): TransactionsRequest {
  const result = parse(xml);
  if (result.kind !== 'transactions') throw new Error(`expected <transactions>, got ${JSON.stringify(result)}`);
  return result;
}

function expectError(xml: string | Buffer, pattern?: RegExp): void {
  let result: Parsed;
  expect(() => {
    result = parse(xml);
  }).not.to.throw();
  const label = typeof xml === 'string' ? xml.slice(0, 120) : `${xml.length} bytes`;
  expect(result!.kind, label).to.equal('error');
  if (pattern && result!.kind === 'error') expect(result!.message, label).to.match(pattern);
}

/** The single <create><account> item's reason, or null when it is valid. */
function accountProblem(attributes: string): string | null {
  const request = create(`<create><account ${attributes}/></create>`);
  const group = request.groups[0];
  if (group?.kind !== 'account') throw new Error('expected an account group');
  return group.item.kind === 'invalid' ? group.item.reason : null;
}

/** The single order's reason, or null when it is valid. */
function orderProblem(attributes: string): string | null {
  const item = transactions(`<transactions id="1"><order ${attributes}/></transactions>`).items[0];
  if (!item) throw new Error('expected an item');
  return item.kind === 'invalid' ? item.reason : null;
}

function sharesProblem(text: string): string | null {
  const group = create(`<create><symbol sym="X"><account id="1">${text}</account></symbol></create>`).groups[0];
  if (group?.kind !== 'symbol') throw new Error('expected a symbol group');
  const item = group.items[0];
  if (!item) throw new Error('expected an item');
  return item.kind === 'invalid' ? item.reason : null;
}

describe('parseRequest', () => {
  describe('<create>', () => {
    it('parses accounts and symbols in document order', () => {
      const request = create(
        '<create>' +
          '<account id="123456" balance="1000"/>' +
          '<symbol sym="SPY"><account id="123456">100000</account><account id="7">0.5</account></symbol>' +
          '<account id="007" balance="0.25"/>' +
          '</create>',
      );
      expect(request).to.deep.equal({
        kind: 'create',
        groups: [
          { kind: 'account', item: { kind: 'account', accountId: '123456', balance: '1000' } },
          {
            kind: 'symbol',
            sym: 'SPY',
            items: [
              { kind: 'shares', sym: 'SPY', accountId: '123456', shares: '100000' },
              { kind: 'shares', sym: 'SPY', accountId: '7', shares: '0.5' },
            ],
          },
          { kind: 'account', item: { kind: 'account', accountId: '007', balance: '0.25' } },
        ],
      });
    });

    it('keeps invalid items in place with their echoes and reasons', () => {
      const request = create(
        '<create>' +
          '<account id="1" balance="100"/>' +
          '<account id="" balance="1"/>' +
          '<symbol sym="X"><account id="1">5</account><account id="a">5</account><account id="2">-3</account></symbol>' +
          '<account id="3" balance="-1"/>' +
          '<bogus/>' +
          '</create>',
      );
      expect(request.groups).to.have.length(5);
      const [first, second, third, fourth, fifth] = request.groups;
      expect(first).to.deep.equal({ kind: 'account', item: { kind: 'account', accountId: '1', balance: '100' } });
      expect(second?.kind === 'account' && second.item).to.include({ kind: 'invalid' });
      expect(second?.kind === 'account' && second.item.kind === 'invalid' && second.item.echo).to.deep.equal([
        ['id', ''],
      ]);
      if (third?.kind !== 'symbol') throw new Error('expected a symbol group');
      expect(third.sym).to.equal('X');
      expect(third.items.map((item) => item.kind)).to.deep.equal(['shares', 'invalid', 'invalid']);
      const bad = third.items[1];
      if (bad?.kind !== 'invalid') throw new Error('expected invalid');
      expect(bad.echo).to.deep.equal([
        ['sym', 'X'],
        ['id', 'a'],
      ]);
      expect(bad.reason).to.be.a('string').and.not.empty;
      const negative = third.items[2];
      if (negative?.kind !== 'invalid') throw new Error('expected invalid');
      expect(negative.echo).to.deep.equal([
        ['sym', 'X'],
        ['id', '2'],
      ]);
      if (fourth?.kind !== 'account' || fourth.item.kind !== 'invalid') throw new Error('expected invalid account');
      expect(fourth.item.echo).to.deep.equal([['id', '3']]);
      expect(fourth.item.reason).to.match(/negative/);
      if (fifth?.kind !== 'account' || fifth.item.kind !== 'invalid') throw new Error('expected invalid item');
      expect(fifth.item.reason).to.match(/bogus/);
    });

    it('gives every inner account an error when the symbol is invalid', () => {
      const group = create(
        '<create><symbol sym="A-B"><account id="1">5</account><account id="2">6</account></symbol></create>',
      ).groups[0];
      if (group?.kind !== 'symbol') throw new Error('expected a symbol group');
      expect(group.sym).to.equal(null);
      expect(group.items).to.deep.equal([
        {
          kind: 'invalid',
          echo: [
            ['sym', 'A-B'],
            ['id', '1'],
          ],
          reason: 'sym must be ASCII letters and digits',
        },
        {
          kind: 'invalid',
          echo: [
            ['sym', 'A-B'],
            ['id', '2'],
          ],
          reason: 'sym must be ASCII letters and digits',
        },
      ]);
    });

    it('answers a <symbol> without accounts with one error', () => {
      const group = create('<create><symbol sym="A"></symbol></create>').groups[0];
      if (group?.kind !== 'symbol') throw new Error('expected a symbol group');
      expect(group.items).to.have.length(1);
      expect(group.items[0]?.kind).to.equal('invalid');
    });

    it('accepts <create/> with no children', () => {
      expect(create('<create/>')).to.deep.equal({ kind: 'create', groups: [] });
      expect(create('<create></create>')).to.deep.equal({ kind: 'create', groups: [] });
    });

    it('trims whitespace around the shares number', () => {
      expect(sharesProblem(' 5 ')).to.equal(null);
      expect(sharesProblem('\n  12.5\n')).to.equal(null);
    });

    it('validates shares', () => {
      expect(sharesProblem('')).to.not.equal(null);
      expect(sharesProblem('0')).to.not.equal(null);
      expect(sharesProblem('-0')).to.not.equal(null);
      expect(sharesProblem('-5')).to.not.equal(null);
      expect(sharesProblem('+5')).to.not.equal(null);
      expect(sharesProblem('1e3')).to.not.equal(null);
      expect(sharesProblem('five')).to.not.equal(null);
      expect(sharesProblem('0.0001')).to.equal(null);
    });

    it('rejects an unexpected attribute on <create>', () => {
      expectError('<create x="1"/>', /unexpected attribute/);
    });
  });

  describe('<create><account> attribute validation', () => {
    const valid = [
      'id="1" balance="0"',
      'id="1" balance="-0"',
      'id="007" balance="100.50"',
      `id="${'9'.repeat(40)}" balance="1"`,
    ];
    for (const attributes of valid) {
      it(`accepts ${attributes}`, () => {
        expect(accountProblem(attributes)).to.equal(null);
      });
    }

    const invalid: Array<[string, RegExp]> = [
      ['balance="1"', /missing account id/],
      ['id="" balance="1"', /empty account id/],
      ['id="1"', /missing balance/],
      ['id="1" balance=""', /balance/],
      ['id="1" balance="+5"', /balance/],
      ['id="1" balance="-5"', /negative/],
      ['id="1" balance="1e3"', /balance/],
      ['id="1" balance=" 5"', /balance/],
      ['id="1" balance="5 "', /balance/],
      ['id="1" balance=".5"', /balance/],
      ['id="1" balance="5."', /balance/],
      ['id="1" balance="1,000"', /balance/],
      ['id="1" balance="$5"', /balance/],
      ['id="1" balance="NaN"', /balance/],
      ['id="1" balance="Infinity"', /balance/],
      ['id="1" balance="0x10"', /balance/],
      ['id="1" balance="1.00000000000000001"', /decimal places/],
      [`id="1" balance="1${'0'.repeat(30)}"`, /integer digits/],
      [`id="1" balance="${'1'.repeat(100)}"`, /balance/],
      ['id="a1" balance="1"', /digits/],
      ['id="-1" balance="1"', /digits/],
      ['id="+1" balance="1"', /digits/],
      ['id=" 1" balance="1"', /digits/],
      ['id="1.0" balance="1"', /digits/],
      ['id="１" balance="1"', /digits/],
      [`id="${'1'.repeat(65)}" balance="1"`, /longer/],
      ['id="1" balance="1" extra="2"', /unexpected attribute 'extra'/],
    ];
    for (const [attributes, reason] of invalid) {
      it(`rejects ${attributes.length > 60 ? `${attributes.slice(0, 60)}…` : attributes}`, () => {
        expect(accountProblem(attributes)).to.match(reason);
      });
    }

    it('echoes only the id of an invalid account', () => {
      const group = create('<create><account id="12" balance="x" other="y"/></create>').groups[0];
      if (group?.kind !== 'account' || group.item.kind !== 'invalid') throw new Error('expected invalid');
      expect(group.item.echo).to.deep.equal([['id', '12']]);
    });
  });

  describe('<transactions>', () => {
    it('parses order, query, cancel and unknown children in order', () => {
      const request = transactions(
        '<transactions id="123456">' +
          '<order sym="SPY" amount="100" limit="145.67"/>' +
          '<order sym="BTC" amount="-0.5" limit="30000"/>' +
          '<query id="1"/>' +
          '<cancel id="2"/>' +
          '<frobnicate id="3"/>' +
          '</transactions>',
      );
      expect(request).to.deep.equal({
        kind: 'transactions',
        accountId: '123456',
        accountEcho: [['id', '123456']],
        accountIdProblem: null,
        items: [
          {
            kind: 'order',
            sym: 'SPY',
            amount: '100',
            limit: '145.67',
            echo: [
              ['sym', 'SPY'],
              ['amount', '100'],
              ['limit', '145.67'],
            ],
          },
          {
            kind: 'order',
            sym: 'BTC',
            amount: '-0.5',
            limit: '30000',
            echo: [
              ['sym', 'BTC'],
              ['amount', '-0.5'],
              ['limit', '30000'],
            ],
          },
          { kind: 'query', orderId: '1', echo: [['id', '1']] },
          { kind: 'cancel', orderId: '2', echo: [['id', '2']] },
          { kind: 'invalid', echo: [], reason: 'unknown element <frobnicate> in <transactions>' },
        ],
      });
    });

    it('echoes order attributes exactly as sent, in sym/amount/limit order', () => {
      const item = transactions(
        '<transactions id="1"><order limit="007.50" amount="-0100" sym="T5asdf"/></transactions>',
      ).items[0];
      expect(item).to.deep.equal({
        kind: 'order',
        sym: 'T5asdf',
        amount: '-0100',
        limit: '007.50',
        echo: [
          ['sym', 'T5asdf'],
          ['amount', '-0100'],
          ['limit', '007.50'],
        ],
      });
    });

    it('returns no items for <transactions> with no children', () => {
      const request = transactions('<transactions id="5"></transactions>');
      expect(request.items).to.deep.equal([]);
      expect(request.accountId).to.equal('5');
    });

    it('keeps the items when the account id is invalid or missing', () => {
      const bad = transactions('<transactions id="abc"><query id="1"/></transactions>');
      expect(bad.accountId).to.equal(null);
      expect(bad.accountEcho).to.deep.equal([['id', 'abc']]);
      expect(bad.accountIdProblem).to.be.a('string');
      expect(bad.items).to.have.length(1);

      const missing = transactions('<transactions><query id="1"/></transactions>');
      expect(missing.accountId).to.equal(null);
      expect(missing.accountEcho).to.deep.equal([]);
      expect(missing.accountIdProblem).to.match(/missing/);

      const extra = transactions('<transactions id="1" x="2"><query id="1"/></transactions>');
      expect(extra.accountId).to.equal(null);
      expect(extra.accountIdProblem).to.match(/unexpected attribute 'x'/);
    });

    describe('order attribute validation', () => {
      const valid = [
        'sym="X" amount="1" limit="1"',
        'sym="abc123" amount="-1.5" limit="0.01"',
        'sym="X" amount="0.0000000000000001" limit="99"',
      ];
      for (const attributes of valid) {
        it(`accepts ${attributes}`, () => {
          expect(orderProblem(attributes)).to.equal(null);
        });
      }
      const invalid: Array<[string, RegExp]> = [
        ['amount="1" limit="1"', /missing sym/],
        ['sym="" amount="1" limit="1"', /empty sym/],
        ['sym="A B" amount="1" limit="1"', /letters and digits/],
        ['sym="A-B" amount="1" limit="1"', /letters and digits/],
        ['sym="A.B" amount="1" limit="1"', /letters and digits/],
        ['sym="Ä" amount="1" limit="1"', /letters and digits/],
        [`sym="${'A'.repeat(65)}" amount="1" limit="1"`, /longer/],
        ['sym="X" limit="1"', /missing amount/],
        ['sym="X" amount="" limit="1"', /amount/],
        ['sym="X" amount="0" limit="1"', /zero/],
        ['sym="X" amount="-0" limit="1"', /zero/],
        ['sym="X" amount="0.000" limit="1"', /zero/],
        ['sym="X" amount="+5" limit="1"', /amount/],
        ['sym="X" amount="1e3" limit="1"', /amount/],
        ['sym="X" amount=" 5" limit="1"', /amount/],
        ['sym="X" amount="5" limit="1E2"', /limit/],
        ['sym="X" amount="5"', /missing limit/],
        ['sym="X" amount="5" limit="0"', /positive/],
        ['sym="X" amount="5" limit="-0"', /positive/],
        ['sym="X" amount="5" limit="-1"', /positive/],
        ['sym="X" amount="5" limit="0.12345678901234567"', /decimal places/],
        [`sym="X" amount="${'9'.repeat(25)}" limit="1"`, /integer digits/],
        ['sym="X" amount="5" limit="1" id="3"', /unexpected attribute 'id'/],
      ];
      for (const [attributes, reason] of invalid) {
        it(`rejects ${attributes.length > 60 ? `${attributes.slice(0, 60)}…` : attributes}`, () => {
          expect(orderProblem(attributes)).to.match(reason);
        });
      }

      it('rejects an order with children', () => {
        const item = transactions(
          '<transactions id="1"><order sym="X" amount="5" limit="1"><x/></order></transactions>',
        ).items[0];
        expect(item).to.deep.equal({
          kind: 'invalid',
          echo: [
            ['sym', 'X'],
            ['amount', '5'],
            ['limit', '1'],
          ],
          reason: '<order> takes no children',
        });
      });
    });

    it('validates query and cancel ids; a malformed id becomes orderId null', () => {
      const request = transactions(
        '<transactions id="1">' +
          '<query id="9223372036854775807"/>' +
          '<cancel id="abc"/>' +
          '<query id="0"/>' +
          '<cancel id="9223372036854775808"/>' +
          '<query id=""/>' +
          '<query/>' +
          '<cancel id="1" x="2"/>' +
          '<query id="1"><x/></query>' +
          '</transactions>',
      );
      expect(request.items).to.deep.equal([
        { kind: 'query', orderId: '9223372036854775807', echo: [['id', '9223372036854775807']] },
        { kind: 'cancel', orderId: null, echo: [['id', 'abc']] },
        { kind: 'query', orderId: null, echo: [['id', '0']] },
        { kind: 'cancel', orderId: null, echo: [['id', '9223372036854775808']] },
        { kind: 'query', orderId: null, echo: [['id', '']] },
        { kind: 'invalid', echo: [], reason: 'missing id' },
        { kind: 'invalid', echo: [['id', '1']], reason: "unexpected attribute 'x'" },
        { kind: 'invalid', echo: [['id', '1']], reason: '<query> takes no children' },
      ]);
    });

    it('refuses more than the maximum number of items as a whole', () => {
      const items = '<query id="1"/>'.repeat(MAX_ITEMS_PER_REQUEST + 1);
      expectError(`<transactions id="1">${items}</transactions>`, /more than/);
    });
  });

  describe('XML handling', () => {
    it('accepts an XML declaration', () => {
      expect(create('<?xml version="1.0" encoding="UTF-8"?>\n<create/>').groups).to.deep.equal([]);
      expect(create("<?xml version='1.0'?><create/>").groups).to.deep.equal([]);
    });

    it('accepts a UTF-8 byte order mark', () => {
      const body = Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from('<?xml version="1.0" encoding="UTF-8"?><create/>'),
      ]);
      expect(parse(body).kind).to.equal('create');
      const bare = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('<create/>')]);
      expect(parse(bare).kind).to.equal('create');
    });

    it('accepts surrounding whitespace and comments', () => {
      expect(parse('  \n<create/>\n\n').kind).to.equal('create');
      expect(parse('<?xml version="1.0"?><!-- hi --><create><!-- c --></create><!-- bye -->').kind).to.equal('create');
    });

    it('decodes the predefined entities in attribute values', () => {
      const group = create(
        '<create><symbol sym="A&amp;&lt;&gt;&quot;&apos;B"><account id="1">5</account></symbol></create>',
      ).groups[0];
      if (group?.kind !== 'symbol') throw new Error('expected a symbol group');
      expect(group.items[0]?.kind === 'invalid' && group.items[0].echo).to.deep.equal([
        ['sym', 'A&<>"\'B'],
        ['id', '1'],
      ]);
    });

    it('decodes character references (XML 1.0 section 4.1)', () => {
      const request = create(
        '<create><symbol sym="&#65;&#x42;"><account id="&#x31;">&#53;</account></symbol></create>',
      );
      expect(request.groups).to.deep.equal([
        { kind: 'symbol', sym: 'AB', items: [{ kind: 'shares', sym: 'AB', accountId: '1', shares: '5' }] },
      ]);
    });

    it('accepts CDATA for shares', () => {
      expect(sharesProblem('<![CDATA[5]]>')).to.equal(null);
    });

    it('refuses malformed XML', () => {
      for (const xml of [
        '<create>',
        '<create><account id="1" balance="1"></create>',
        '<create></created>',
        '<create><account id="1" balance="1"/>',
        '<create><account id=1 balance="1"/></create>',
        '<create><account id="1" id="2" balance="1"/></create>',
        '<create><account id="1" balance/></create>',
        '<create></create>trailing',
        'text<create/>',
        '<create>a & b</create>',
        'not xml at all',
        '<',
        '',
        '   \n ',
      ]) {
        expectError(xml);
      }
    });

    it('refuses DOCTYPE and ENTITY declarations without expanding them', () => {
      expectError('<!DOCTYPE create [<!ENTITY a "b">]><create/>', /DOCTYPE/);
      expectError('<!doctype create><create/>', /DOCTYPE/);
      expectError('<?xml version="1.0"?>\n<!DOCTYPE create SYSTEM "file:///etc/passwd"><create/>', /DOCTYPE/);
      expectError('<create><!ENTITY x "y"></create>', /DOCTYPE|entity/);
      const lol =
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]><create>&lol2;</create>';
      expectError(lol);
    });

    it('refuses an undefined entity', () => {
      expectError('<create>&foo;</create>', /entity/);
      expectError('<create><account id="&nbsp;" balance="1"/></create>', /entity/);
    });

    it('refuses an illegal character reference', () => {
      expectError('<create><symbol sym="A"><account id="1">&#0;</account></symbol></create>');
    });

    it('reads a declared version 1.1 by XML 1.0 rules, this request and the next', () => {
      // XML 1.1 allows &#1;; a 1.1 declaration must not switch the rules, for this parse or later ones.
      expectError('<?xml version="1.1"?><create><account id="1" balance="&#1;5"/></create>', /character not allowed/);
      expect(create('<?xml version="1.1"?><create/>').groups).to.deep.equal([]);
      expectError('<create><account id="1" balance="&#1;5"/></create>', /character not allowed/);
    });

    it('accepts markup inside comments and CDATA that would be wrong elsewhere', () => {
      expect(sharesProblem('<![CDATA[5]]><!-- R&D: <a> &#0; &nbsp; -->')).to.equal(null);
    });

    it('refuses an encoding declaration other than UTF-8 unless every byte is ASCII', () => {
      expect(parse('<?xml version="1.0" encoding="utf-8"?><create/>').kind).to.equal('create');
      expect(parse('<?xml version="1.0" encoding="US-ASCII"?><create/>').kind).to.equal('create');
      expect(parse('<?xml version="1.0" encoding="ISO-8859-1"?><create/>').kind).to.equal('create');
      expectError('<?xml version="1.0" encoding="ISO-8859-1"?><create><!-- é --></create>', /UTF-8/);
      expectError('<?xml version="1.0" encoding="UTF-16"?><create/>', /UTF-8/);
      expectError('<?xml version="1.0" encoding="EBCDIC-US"?><create/>', /UTF-8/);
    });

    it('refuses a raw control character (not an XML 1.0 Char)', () => {
      expectError('<create><account id="\u0001" balance="1"/></create>');
    });

    it('refuses two root elements', () => {
      expectError('<create/><create/>', /root/);
      expectError('<create/><transactions id="1"/>', /root/);
    });

    it('refuses an unknown root element', () => {
      expectError('<results/>', /unknown root/);
      expectError('<Create/>', /unknown root/);
      expectError('<ns:create xmlns:ns="urn:x"/>', /unknown root/);
      expectError('<?xml version="1.0"?><order sym="X" amount="1" limit="1"/>', /unknown root/);
    });

    it('refuses invalid UTF-8', () => {
      expectError(Buffer.from([0x3c, 0x63, 0xff, 0x3e]), /UTF-8/);
      expectError(
        Buffer.concat([
          Buffer.from('<create><account id="1" balance="'),
          Buffer.from([0xc3]),
          Buffer.from('"/></create>'),
        ]),
        /UTF-8/,
      );
      // Overlong encoding of '/' and an encoded UTF-16 surrogate.
      expectError(
        Buffer.concat([Buffer.from('<create>'), Buffer.from([0xc0, 0xaf]), Buffer.from('</create>')]),
        /UTF-8/,
      );
      expectError(
        Buffer.concat([Buffer.from('<create>'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('</create>')]),
        /UTF-8/,
      );
      // Truncated multibyte character at the very end.
      expectError(Buffer.concat([Buffer.from('<create/>'), Buffer.from([0xe2, 0x82])]), /UTF-8/);
    });

    it('accepts multibyte UTF-8 where it is legal', () => {
      expect(parse('<create><!-- é€😀 --></create>').kind).to.equal('create');
      expect(accountProblem('id="1" balance="€5"')).to.match(/balance/);
    });

    it('refuses deep nesting without throwing', () => {
      for (const depth of [20, 100, 10_000, 100_000]) {
        expectError(`<transactions id="1">${'<a>'.repeat(depth)}${'</a>'.repeat(depth)}</transactions>`);
        expectError(`<create>${'<symbol sym="X">'.repeat(depth)}${'</symbol>'.repeat(depth)}</create>`);
      }
    });

    it('accepts the nesting real requests need', () => {
      expect(parse('<create><symbol sym="X"><account id="1">5</account></symbol></create>').kind).to.equal('create');
      const shallow = transactions(`<transactions id="1"><a><b><c/></b></a></transactions>`);
      expect(shallow.items).to.deep.equal([
        { kind: 'invalid', echo: [], reason: 'unknown element <a> in <transactions>' },
      ]);
    });
  });
});

describe('the shape of one request is bounded while it is read', () => {
  const attributes = (count: number): string => Array.from({ length: count }, (_, index) => ` a${index}="x"`).join('');
  const order = '<order sym="S" amount="1" limit="1"/>';

  it(`refuses an element with more than ${MAX_ATTRIBUTES_PER_ELEMENT} attributes, whichever element it is`, () => {
    const over = attributes(MAX_ATTRIBUTES_PER_ELEMENT + 1);
    const tooMany = new RegExp(`more than ${MAX_ATTRIBUTES_PER_ELEMENT} attributes`);
    expectError(`<transactions id="1"${over}>${order}</transactions>`, tooMany);
    expectError(`<transactions id="1"><order${over}/></transactions>`, tooMany);
    expectError(`<create><account${over}/></create>`, tooMany);
    expectError(`<create><symbol sym="S"><account id="1"${over}>5</account></symbol></create>`, tooMany);
    // Deep inside an item, where it would only have made that item's error.
    expectError(`<transactions id="1"><order><a><b${over}/></a></order></transactions>`, tooMany);
    // 90,000 attributes on one element (about 1 MiB): refused at the 17th.
    expectError(
      `<transactions id="1"><order sym="S" amount="1" limit="1"${attributes(90_000)}/></transactions>`,
      tooMany,
    );
  });

  it(`takes ${MAX_ATTRIBUTES_PER_ELEMENT} attributes on an element (unknown ones are that item's error)`, () => {
    const request = transactions(
      `<transactions id="1"><order sym="S" amount="1" limit="1"${attributes(MAX_ATTRIBUTES_PER_ELEMENT - 3)}/></transactions>`,
    );
    expect(request.items[0]).to.deep.include({ kind: 'invalid', reason: "unexpected attribute 'a0'" });
  });

  it(`refuses more than ${MAX_ELEMENTS_PER_REQUEST} elements below the root, nested in items or not`, () => {
    const tooMany = new RegExp(`more than ${MAX_ELEMENTS_PER_REQUEST} elements`);
    expectError(
      `<transactions id="1"><order>${'<a/>'.repeat(MAX_ELEMENTS_PER_REQUEST)}</order></transactions>`,
      tooMany,
    );
    // 260,000 empty elements in one order (1 MiB): refused at the 20,001st.
    expectError(`<transactions id="1"><order>${'<a/>'.repeat(260_000)}</order></transactions>`, tooMany);
    expectError(
      `<create><account id="1" balance="1">${'<x><y/></x>'.repeat(MAX_ELEMENTS_PER_REQUEST / 2)}</account></create>`,
      tooMany,
    );
    const atLimit = transactions(
      `<transactions id="1"><order>${'<a/>'.repeat(MAX_ELEMENTS_PER_REQUEST - 1)}</order></transactions>`,
    );
    expect(atLimit.items).to.have.length(1);
  });

  it(`takes the largest valid <create>: ${MAX_ITEMS_PER_REQUEST} symbols of one account each (${MAX_ELEMENTS_PER_REQUEST} elements)`, () => {
    const request = create(
      `<create>${'<symbol sym="S"><account id="1">1</account></symbol>'.repeat(MAX_ITEMS_PER_REQUEST)}</create>`,
    );
    expect(request.groups).to.have.length(MAX_ITEMS_PER_REQUEST);
  });

  it(`counts items as they are read: ${MAX_ITEMS_PER_REQUEST} accounts across symbols pass, one more is refused`, () => {
    const half = MAX_ITEMS_PER_REQUEST / 2;
    const accounts = (count: number): string => '<account id="1">1</account>'.repeat(count);
    const at = create(
      `<create><symbol sym="S">${accounts(half)}</symbol><symbol sym="T">${accounts(half - 1)}</symbol><account id="2" balance="1"/></create>`,
    );
    expect(at.groups).to.have.length(3);
    expectError(
      `<create><symbol sym="S">${accounts(half)}</symbol><symbol sym="T">${accounts(half)}</symbol><account id="2" balance="1"/></create>`,
      new RegExp(`more than ${MAX_ITEMS_PER_REQUEST} items`),
    );
    // An empty <symbol> is one item (its error); accounts in an unknown element are none.
    expectError(`<create>${'<symbol sym="S"/>'.repeat(MAX_ITEMS_PER_REQUEST + 1)}</create>`, /more than 10000 items/);
    expect(create(`<create><bogus>${accounts(MAX_ITEMS_PER_REQUEST + 1)}</bogus></create>`).groups).to.have.length(1);
  });

  it(`refuses nesting deeper than ${MAX_NESTING} levels`, () => {
    expectError(`<create>${'<a>'.repeat(MAX_NESTING)}${'</a>'.repeat(MAX_NESTING)}</create>`, /deeper than 16/);
    expect(
      create(`<create>${'<a>'.repeat(MAX_NESTING - 1)}${'</a>'.repeat(MAX_NESTING - 1)}</create>`).groups,
    ).to.have.length(1);
  });

  it('parseRequestInSlices gives the same answer as parseRequest, with characters split across slices', async () => {
    // Slices are 64 Ki characters: put multi-byte characters, a surrogate pair, CR LF, a
    // reference and an error at and around every slice boundary.
    const filler = (size: number): string => `<!--${'x'.repeat(size)}-->`;
    const bodies: string[] = [];
    for (const offset of [-3, -2, -1, 0, 1, 2]) {
      for (const piece of [
        'é',
        '😀',
        '\r\n',
        '&#49;',
        '&amp;',
        '<order sym="S" amount="1" limit="1"/>',
        '<order sym="S" amount="1" limit="1" x="&#0;"/>',
      ]) {
        const head = '<transactions id="1">';
        bodies.push(`${head}${filler(64 * 1024 - head.length - 7 + offset)}${piece}${order}</transactions>`);
        bodies.push(
          `${head}${filler(2 * 64 * 1024 - head.length - 7 + offset)}<order sym="${piece}" amount="1" limit="1"/></transactions>`,
        );
      }
    }
    bodies.push(`<transactions id="1">${order.repeat(MAX_ITEMS_PER_REQUEST)}</transactions>`);
    bodies.push(`<transactions id="1"><order>${'<a/>'.repeat(MAX_ELEMENTS_PER_REQUEST + 5)}</order></transactions>`);
    for (const body of bodies) {
      const bytes = Buffer.from(body, 'utf8');
      expect(await parseRequestInSlices(bytes), body.slice(-80)).to.deep.equal(parseRequest(bytes));
    }
  });

  it('parseRequestInSlices lets the event loop run while it reads a large document', async () => {
    // About 1 MiB that turns out malformed only at its very end: the whole body is read.
    const body = Buffer.from(`<transactions id="1">${order.repeat(9_000)}<!--${'x'.repeat(600_000)}--></transaction>`);
    let turns = 0;
    let reading = true;
    const turn = (): void => {
      turns++;
      if (reading) setImmediate(turn);
    };
    setImmediate(turn);
    const result = await parseRequestInSlices(body);
    reading = false;
    expect(result.kind).to.equal('error');
    // One pause per 64 Ki characters read.
    expect(turns).to.be.at.least(Math.floor(body.length / (64 * 1024)) - 1);
  });
});

describe('isCompleteDocument', () => {
  const complete = [
    '<create/>',
    '<create></create>',
    '<?xml version="1.0" encoding="UTF-8"?>\n<create><account id="1" balance="5"/></create>',
    '<create/>\r\n',
    '<transactions id="1"><query id="1"/></transactions>\n',
    '<foo/>',
  ];
  for (const xml of complete) {
    it(`is true for ${JSON.stringify(xml).slice(0, 60)}`, () => {
      expect(isCompleteDocument(Buffer.from(xml))).to.equal(true);
    });
  }
  const incomplete = [
    '',
    '\n',
    '<create',
    '<create>',
    '<?xml version="1.0"?>',
    '<create><account id="1" balance="5"/>',
    '<transactions id="1"><query id="1"/></transactions',
    '<create/><cre',
    '<create/><create/>',
  ];
  for (const xml of incomplete) {
    it(`is false for ${JSON.stringify(xml).slice(0, 60)}`, () => {
      expect(isCompleteDocument(Buffer.from(xml))).to.equal(false);
    });
  }

  it('is false for a document whose multibyte character is cut', () => {
    const bytes = Buffer.from('<create><!-- € --></create>');
    expect(isCompleteDocument(bytes.subarray(0, bytes.indexOf(Buffer.from('€')) + 1))).to.equal(false);
  });

  it('is true for every complete prefix only at the end, never before', () => {
    const xml = Buffer.from('<create><symbol sym="X"><account id="1">5</account></symbol></create>');
    for (let cut = 0; cut < xml.length; cut++) {
      expect(isCompleteDocument(xml.subarray(0, cut)), `cut at ${cut}`).to.equal(false);
    }
    expect(isCompleteDocument(xml)).to.equal(true);
  });
});
