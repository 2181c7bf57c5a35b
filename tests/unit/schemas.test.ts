/**
 * schema/requests.xsd and schema/replies.xsd: examples validate, malformed documents do not,
 * checked in process (libxml2-wasm); and the xmllint program, where it is installed, gives
 * every document here the same verdict.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import {
  accountIdProblem,
  amountProblem,
  balanceProblem,
  limitProblem,
  sharesProblem,
  symbolProblem,
} from '../../server/protocol/fields.js';
import {
  schemaPath,
  validateDocuments,
  validateWithXmllint,
  XMLLINT,
  type SchemaName,
} from '../support/reply-schema.js';
import { skipUnless, titleNeeding } from '../support/requirements.js';

const DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';

/** Every document this file validates, by schema: the xmllint comparison at the end checks them all again. */
const checked: Record<SchemaName, Set<string>> = { requests: new Set(), replies: new Set() };

/** Names the documents that do not get the expected verdict (empty when all do). */
function wrongVerdicts(name: SchemaName, documents: readonly string[], expectValid: boolean): string[] {
  for (const document of documents) checked[name].add(document);
  const failures = validateDocuments(name, documents);
  const invalid = new Set(failures.map((failure) => failure.index));
  return documents
    .map((document, index) => ({ document, index }))
    .filter(({ index }) => invalid.has(index) === expectValid)
    .map(({ document, index }) =>
      expectValid
        ? `${document}\n  ${failures.find((failure) => failure.index === index)?.errors.join('\n  ')}`
        : document,
    );
}

const results = (body: string): string => `${DECLARATION}\n<results>\n${body}\n</results>`;

describe('schema/requests.xsd', () => {
  it('accepts the examples of examples/, SPEC.md and docs/protocol.md', () => {
    const examples = path.join(path.dirname(path.dirname(schemaPath('requests'))), 'examples');
    const files = readdirSync(examples)
      .filter((file) => file.endsWith('.xml'))
      .map((file) => readFileSync(path.join(examples, file), 'utf8'));
    expect(files).to.not.be.empty;
    const documents = [
      ...files,
      '<create/>',
      '<create><account id="123456" balance="1000"/><symbol sym="SPY"><account id="123456">100000</account></symbol></create>',
      `${DECLARATION}<create>\n  <account id="007" balance="0"/>\n  <account id="7" balance="0.5"/>\n` +
        '  <symbol sym="T5asdf">\n    <account id="007"> 12.25 </account>\n    <account id="7">0.1</account>\n  </symbol>\n</create>',
      '<transactions id="123456"><order sym="SPY" amount="100" limit="145.67"/><query id="1"/><cancel id="1"/></transactions>',
      // SPEC's worked example, as orders of two accounts.
      '<transactions id="1"><order sym="X" amount="300" limit="125"/><order sym="X" amount="200" limit="127"/>' +
        '<order sym="X" amount="400" limit="125"/></transactions>',
      '<transactions id="2"><order sym="X" amount="-100" limit="130"/><order sym="X" amount="-500" limit="128"/>' +
        '<order sym="X" amount="-200" limit="140"/><order sym="X" amount="-400" limit="124"/></transactions>',
      '<transactions id="2"><query id="1"/><query id="7"/><query id="6"/><cancel id="1"/></transactions>',
      // No children: <results/> for an existing account.
      '<transactions id="1"/>',
      '<transactions id="1"></transactions>',
      `<transactions id="${'9'.repeat(64)}"><order sym="${'A'.repeat(64)}" amount="-0.0000000000000001" limit="${'9'.repeat(24)}.5"/></transactions>`,
    ];
    expect(wrongVerdicts('requests', documents, true)).to.deep.equal([]);
  });

  it('rejects documents of the wrong shape', () => {
    const documents = [
      '<results/>',
      '<transactions/>',
      '<transactions><query id="1"/></transactions>',
      '<transactions id="1"><order sym="X" amount="1"/></transactions>',
      '<transactions id="1"><order sym="X" amount="1" limit="1" extra="x"/></transactions>',
      '<transactions id="1"><account id="1" balance="1"/></transactions>',
      '<transactions id="1"><query id="0"/></transactions>',
      '<transactions id="1"><cancel id="x"/></transactions>',
      '<create><symbol sym="X"/></create>',
      '<create><symbol sym="X"><account id="1">1<b/></account></symbol></create>',
      '<create><account id="1" balance="1">5</account></create>',
      '<create><account id="1"/></create>',
      '<create><order sym="X" amount="1" limit="1"/></create>',
    ];
    expect(wrongVerdicts('requests', documents, false)).to.deep.equal([]);
  });

  /** Each value is tried in its place; the schema's verdict must match the server's field check. */
  const cases: Array<{
    field: string;
    check: (value: string) => string | null;
    wrap: (value: string) => string;
    values: string[];
  }> = [
    {
      field: 'account id',
      check: accountIdProblem,
      wrap: (value) => `<create><account id="${value}" balance="1"/></create>`,
      values: ['0', '007', '123456', '9'.repeat(64), '9'.repeat(65), 'abc', '-1', '', ' 1', '1 ', '１'],
    },
    {
      field: 'sym',
      check: symbolProblem,
      wrap: (value) => `<transactions id="1"><order sym="${value}" amount="1" limit="1"/></transactions>`,
      values: ['SPY', 'T5asdf', 'x', 'A'.repeat(64), 'A'.repeat(65), 'BR K', '€', '', 'A-B', 'A_B'],
    },
    {
      field: 'balance',
      check: balanceProblem,
      wrap: (value) => `<create><account id="1" balance="${value}"/></create>`,
      values: [
        '0',
        '0.0',
        '100000',
        '0.5',
        '00012.50',
        `${'9'.repeat(24)}.${'9'.repeat(16)}`,
        `000${'9'.repeat(24)}`,
        `1.${'0'.repeat(40)}`,
        '-1',
        '1e5',
        '+5',
        ' 5',
        '5 ',
        '.5',
        '5.',
        '',
        '1,5',
        `1${'0'.repeat(24)}`,
        `0.${'1'.repeat(17)}`,
        '1'.repeat(65),
      ],
    },
    {
      field: 'shares',
      check: sharesProblem,
      wrap: (value) => `<create><symbol sym="X"><account id="1">${value}</account></symbol></create>`,
      values: [
        '1',
        '500',
        '0.1',
        '0.0000000000000001',
        '12.250',
        '0',
        '0.000',
        '-3',
        '1e3',
        '',
        `0.${'0'.repeat(16)}1`,
      ],
    },
    {
      field: 'amount',
      check: amountProblem,
      wrap: (value) => `<transactions id="1"><order sym="X" amount="${value}" limit="1"/></transactions>`,
      values: [
        '100',
        '-100',
        '0.5',
        '-0.5',
        '-0.0000000000000001',
        '0',
        '-0',
        '0.00',
        '+5',
        '1e3',
        '-',
        '--1',
        ' 1',
        '1.5.5',
      ],
    },
    {
      field: 'limit',
      check: limitProblem,
      wrap: (value) => `<transactions id="1"><order sym="X" amount="1" limit="${value}"/></transactions>`,
      values: ['125', '145.67', '0.01', '125.50', '0', '-1', '-0.5', '1E2', 'NaN', 'Infinity', '$5'],
    },
  ];

  for (const { field, check, wrap, values } of cases) {
    it(`gives the server's verdict on ${field} values`, () => {
      const valid = values.filter((value) => check(value) === null);
      const invalid = values.filter((value) => check(value) !== null);
      expect(valid, 'no valid examples').to.not.be.empty;
      expect(invalid, 'no invalid examples').to.not.be.empty;
      expect(wrongVerdicts('requests', valid.map(wrap), true), 'valid per server, rejected by schema').to.deep.equal(
        [],
      );
      expect(
        wrongVerdicts('requests', invalid.map(wrap), false),
        'invalid per server, accepted by schema',
      ).to.deep.equal([]);
    });
  }

  it('is stricter than the server only where documented: "-0" as a balance', () => {
    expect(balanceProblem('-0')).to.equal(null);
    expect(wrongVerdicts('requests', ['<create><account id="1" balance="-0"/></create>'], false)).to.deep.equal([]);
  });
});

describe('schema/replies.xsd', () => {
  it('accepts replies as SPEC.md and docs/protocol.md show them', () => {
    const documents = [
      `${DECLARATION}\n<results/>`,
      results('  <error>malformed XML: expected exactly one root element</error>'),
      results('  <created id="1"/>\n  <created id="2"/>\n  <created sym="SPY" id="2"/>'),
      results('  <error id="1">account already exists</error>\n  <error sym="SPY" id="9">unknown account</error>'),
      results(
        '  <opened sym="SPY" amount="100" limit="125.50" id="1"/>\n  <opened sym="SPY" amount="-0.5" limit="0.010" id="12345678901234567890"/>',
      ),
      results(
        '  <error sym="SPY" amount="100" limit="125">insufficient funds</error>\n  <error sym="BR K" amount="1e3" limit="">amount is not a plain decimal number</error>',
      ),
      results(
        '  <error id="abc">no such order for this account</error>\n  <error id="1">order has nothing open to cancel</error>',
      ),
      results('  <error sym="a&quot;&lt;&amp;&gt;\'b">x &lt; y &amp; "z"</error>'),
      // SPEC's worked example: orders 1, 7 and 6 after order 7 arrived; then order 1 canceled.
      results(
        [
          '  <status id="1">',
          '    <open shares="100"/>',
          '    <executed shares="200" price="125" time="1519348326"/>',
          '  </status>',
          '  <status id="7">',
          '    <executed shares="200" price="127" time="1519348326"/>',
          '    <executed shares="200" price="125" time="1519348326"/>',
          '  </status>',
          '  <status id="6">',
          '    <open shares="400"/>',
          '  </status>',
          '  <canceled id="1">',
          '    <canceled shares="100" time="1519348327"/>',
          '    <executed shares="200" price="125" time="1519348326"/>',
          '  </canceled>',
          '  <status id="01">',
          '    <canceled shares="100" time="1519348327"/>',
          '    <executed shares="200" price="125" time="1519348326"/>',
          '  </status>',
        ].join('\n'),
      ),
      results(
        '  <status id="3">\n    <canceled shares="0.3" time="0"/>\n  </status>\n  <canceled id="4">\n    <canceled shares="1234.25" time="1"/>\n  </canceled>',
      ),
    ];
    expect(wrongVerdicts('replies', documents, true)).to.deep.equal([]);
  });

  it('rejects malformed replies', () => {
    const status = (children: string, id = '1') => results(`  <status id="${id}">${children}</status>`);
    const executed = (shares: string, price: string, time = '1519348326') =>
      `<executed shares="${shares}" price="${price}" time="${time}"/>`;
    const documents = [
      '<create/>',
      '<results><results/></results>',
      results('  <foo/>'),
      // <status> with both <open> and <canceled>, out of order, twice, or empty.
      status('<open shares="100"/><canceled shares="100" time="1"/>'),
      status(`${executed('1', '1')}<open shares="1"/>`),
      status('<open shares="1"/><open shares="1"/>'),
      status(''),
      status('<open shares="1"/>', 'abc'),
      // Computed numbers: exponent, trailing zeros, leading zeros, zero, sign, bare point, currency.
      status(executed('200', '1.25e2')),
      status(executed('200', '1E2')),
      status(executed('200.0', '125')),
      status(executed('200', '125.50')),
      status(executed('0200', '125')),
      status(executed('0', '125')),
      status(executed('-200', '125')),
      status(executed('200', '+125')),
      status(executed('.5', '125')),
      status(executed('5.', '125')),
      status(executed('200', '$125')),
      status(executed('200', '125', '1519348326.5')),
      status(executed('200', '125', '')),
      status('<open shares="1e2"/>'),
      status('<open shares="100" time="1"/>'),
      status('<canceled shares="100"/>'),
      // <canceled> replies: need their canceled part first, never <open>.
      results('  <canceled id="1"/>'),
      results(`  <canceled id="1">${executed('1', '1')}</canceled>`),
      results('  <canceled id="1"><open shares="1"/></canceled>'),
      results('  <canceled id="1"><canceled shares="1" time="1"/><canceled shares="1" time="1"/></canceled>'),
      results('  <canceled shares="1" time="1"/>'),
      // <opened> echoes valid values and carries a server-made id.
      results('  <opened sym="SPY" amount="100" limit="125"/>'),
      results('  <opened sym="SPY" amount="100" limit="125" id="007"/>'),
      results('  <opened sym="SPY" amount="0" limit="125" id="1"/>'),
      results('  <opened sym="S Y" amount="1" limit="125" id="1"/>'),
      results('  <opened sym="SPY" amount="1" limit="-125" id="1"/>'),
      // <created> and <error>.
      results('  <created/>'),
      results('  <created id="1" balance="5"/>'),
      results('  <created sym="BR K" id="1"/>'),
      results('  <error id="1"/>'),
      results('  <error shares="1">why</error>'),
      results('  <error>why<b/></error>'),
      results('  <opened sym="SPY" amount="1" limit="1" id="1">text</opened>'),
    ];
    expect(wrongVerdicts('replies', documents, false)).to.deep.equal([]);
  });
});

/** Values from a small alphabet, so that near-misses of every number and name pattern come up often. */
const value = fc.oneof(
  fc.string({
    unit: fc.constantFrom('0', '1', '9', '.', '-', '+', 'e', 'E', ' ', 'A', 'z', '_', '１', '€', '&amp;', '\t'),
    maxLength: 8,
  }),
  fc.stringMatching(/^-?[0-9]{1,3}(\.[0-9]{0,3})?$/),
  fc.constantFrom('0', '-0', '00', '0.0', '1', '007', '9'.repeat(64), '9'.repeat(65), 'A'.repeat(65), ''),
);

/** Documents with one field drawn from `value`, the others valid; a fixed seed, so the same documents each run. */
function generated(templates: Array<(value: string) => string>, seed: number): string[] {
  return fc.sample(
    fc
      .tuple(fc.nat(templates.length - 1), value)
      .map(([index, field]) => (templates[index] as (value: string) => string)(field)),
    { numRuns: 400, seed },
  );
}

const GENERATED: Record<SchemaName, string[]> = {
  requests: generated(
    [
      (v) => `<create><account id="${v}" balance="1"/></create>`,
      (v) => `<create><account id="1" balance="${v}"/></create>`,
      (v) => `<create><symbol sym="${v}"><account id="1">1</account></symbol></create>`,
      (v) => `<create><symbol sym="X"><account id="1">${v}</account></symbol></create>`,
      (v) => `<transactions id="${v}"><query id="1"/></transactions>`,
      (v) => `<transactions id="1"><order sym="${v}" amount="1" limit="1"/></transactions>`,
      (v) => `<transactions id="1"><order sym="X" amount="${v}" limit="1"/></transactions>`,
      (v) => `<transactions id="1"><order sym="X" amount="1" limit="${v}"/></transactions>`,
      (v) => `<transactions id="1"><query id="${v}"/><cancel id="1"/></transactions>`,
      (v) => `<transactions id="1"><cancel id="${v}"/></transactions>`,
    ],
    20,
  ),
  replies: generated(
    [
      (v) => results(`  <status id="${v}">\n    <open shares="1"/>\n  </status>`),
      (v) => results(`  <status id="1">\n    <open shares="${v}"/>\n  </status>`),
      (v) => results(`  <status id="1">\n    <executed shares="${v}" price="1" time="1"/>\n  </status>`),
      (v) => results(`  <status id="1">\n    <executed shares="1" price="${v}" time="1"/>\n  </status>`),
      (v) => results(`  <status id="1">\n    <executed shares="1" price="1" time="${v}"/>\n  </status>`),
      (v) => results(`  <canceled id="1">\n    <canceled shares="${v}" time="1"/>\n  </canceled>`),
      (v) => results(`  <canceled id="1">\n    <canceled shares="1" time="${v}"/>\n  </canceled>`),
      (v) => results(`  <opened sym="${v}" amount="1" limit="1" id="1"/>`),
      (v) => results(`  <opened sym="X" amount="${v}" limit="1" id="1"/>`),
      (v) => results(`  <opened sym="X" amount="1" limit="${v}" id="1"/>`),
      (v) => results(`  <opened sym="X" amount="1" limit="1" id="${v}"/>`),
      (v) => results(`  <created id="${v}"/>\n  <created sym="${v}" id="1"/>`),
      (v) => results(`  <error sym="${v}" amount="${v}" limit="${v}">${v}</error>\n  <error id="${v}">x</error>`),
    ],
    21,
  ),
};

/** Not well-formed at all: both must reject these too. */
const NOT_WELL_FORMED = [
  '',
  'plain text',
  '<create>',
  '<create></transactions>',
  '<results><error>a & b</error></results>',
  '<a/><b/>',
];

describe('the in-process schema check and the xmllint program', () => {
  it('in process, the generated documents get both verdicts (the comparison below is not vacuous)', () => {
    for (const name of ['requests', 'replies'] as const) {
      const invalid = validateDocuments(name, GENERATED[name]).length;
      expect(invalid, `${name}: invalid generated documents`).to.be.greaterThan(GENERATED[name].length / 10);
      expect(invalid, `${name}: invalid generated documents`).to.be.lessThan(GENERATED[name].length * 0.9);
    }
  });

  it(
    titleNeeding(
      'give the same verdict on every document of this file, generated ones and ones not well-formed',
      XMLLINT,
    ),
    async function () {
      skipUnless(this, XMLLINT);
      this.timeout(60_000);
      for (const name of ['requests', 'replies'] as const) {
        // The documents the tests above checked (when they ran first, as in a whole run), then the rest.
        const documents = [...new Set([...checked[name], ...GENERATED[name], ...NOT_WELL_FORMED])];
        const inProcess = new Set(validateDocuments(name, documents).map((failure) => failure.index));
        const byXmllint = new Set((await validateWithXmllint(name, documents)).map((failure) => failure.index));
        const differ = documents
          .filter((_, index) => inProcess.has(index) !== byXmllint.has(index))
          .map(
            (document, index) =>
              `${inProcess.has(index) ? 'invalid' : 'valid'} in process, ${byXmllint.has(index) ? 'invalid' : 'valid'} by xmllint: ${document}`,
          );
        expect(differ, `${name}: ${documents.length} documents`).to.deep.equal([]);
      }
    },
  );
});
