/**
 * Only well-formed XML 1.0 documents are ever applied, with libxml2 (xmllint) as the judge: in
 * process, xmllint built to WebAssembly; the xmllint program, where it is installed, gives every
 * document the same verdict.
 *
 * A seeded corpus of documents is generated: real requests (each would create an account or
 * place an order if accepted) with fragments inserted, bytes deleted or appended, and token
 * soup. libxml2 gives its verdict on every document, then:
 *  - every document libxml2 finds malformed is refused by parseRequest, and is never taken
 *    as a complete document (the overstated-length path);
 *  - every document libxml2 finds well-formed is not refused as malformed (it may still be
 *    refused for the server's own rules: a DOCTYPE, an unknown root, a non-UTF-8 encoding).
 * FUZZ_SEED=<n> varies the corpus.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { isCompleteDocument, parseRequest } from '../../server/protocol/parse-request.js';
import { XMLLINT } from '../support/reply-schema.js';
import { skipUnless, titleNeeding } from '../support/requirements.js';
import { libxml2WellFormed, xmllintWellFormed } from '../support/xmllint.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_207);
const CORPUS_SIZE = 4_000;

/** Requests that change something when applied. */
const BASES = [
  '<create><account id="70001" balance="5"/></create>',
  '<?xml version="1.0" encoding="UTF-8"?>\n<create>\n  <account id="70001" balance="5"/>\n  <symbol sym="SPY"><account id="70001">10</account></symbol>\n</create>\n',
  '<transactions id="70001"><order sym="SPY" amount="1" limit="2"/><query id="1"/><cancel id="1"/></transactions>',
  "<?xml version='1.0'?>\r\n<transactions id='70001'>\r\n<order sym='SPY' amount='-1' limit='2'></order>\r\n</transactions>",
  '<create><symbol sym="SPY"><account id="70001"><![CDATA[10]]></account></symbol><!-- note --></create>',
];

/** Markup that is legal somewhere and illegal elsewhere, and near misses of it. */
const FRAGMENTS = [
  // references
  '&amp;',
  '&lt;',
  '&gt;',
  '&quot;',
  '&apos;',
  '&',
  '&amp',
  '&#38;',
  '&#x26;',
  '&#0;',
  '&#x0;',
  '&#9;',
  '&#xD800;',
  '&#xFFFE;',
  '&#x10FFFF;',
  '&#x110000;',
  '&#;',
  '&#x;',
  '&foo;',
  '&nbsp;',
  '& amp;',
  '&#65',
  '&#6 5;',
  '&#X41;',
  // comments
  '<!-- c -->',
  '<!---->',
  '<!-- a -- b -->',
  '<!--->',
  '<!-- x --->',
  '<!-- - -->',
  '<!--',
  '-->',
  '<!- x ->',
  '<!-- <create/> -->',
  // declarations and processing instructions
  '<?xml version="1.0"?>',
  '<?xml version="1.0" encoding="UTF-8"?>',
  '<?xml?>',
  '<?xml encoding="UTF-8"?>',
  '<?xml version="1.0" standalone="yes"?>',
  '<?xml version="1.0" standalone="maybe"?>',
  '<?xml version="2.0"?>',
  '<?xml version="1.1"?>',
  '<?xml version="1.0" encoding="UTF-16"?>',
  '<?xml version="1.0" encoding="US-ASCII"?>',
  '<?xml version="1.0" encoding="ISO-8859-1"?>',
  '<?xml version="1.0" encoding="no such"?>',
  "<?xml version='1.0' ?>",
  '<?xml  version = "1.0" ?>',
  '<?xml version="1.0"encoding="UTF-8"?>',
  '<?XML version="1.0"?>',
  '<?Xml?>',
  '<?xml-stylesheet href="a"?>',
  '<?pi?>',
  '<?pi body > text?>',
  '<? pi?>',
  '<?1pi?>',
  '<?pi',
  '?>',
  '<?xmlx?>',
  // CDATA
  ']]>',
  ']]',
  ']>',
  '<![CDATA[x]]>',
  '<![CDATA[]]>',
  '<![CDATA[<account id="70002" balance="5"/>]]>',
  '<![CDATA[',
  '<![cdata[x]]>',
  '<![CDATA[ ]] ]]>',
  // elements and attributes
  '<create/>',
  '</create>',
  '<account id="70003" balance="5"/>',
  '<a>',
  '</a>',
  '<a/>',
  '<a></a>',
  '<1a/>',
  '<-a/>',
  '<.a/>',
  '<:a/>',
  '<a:/>',
  '<a:b/>',
  '<_a/>',
  '<a b="1" b="2"/>',
  '<a b=1/>',
  '<a b/>',
  '<a b="1"c="2"/>',
  '<a b="<"/>',
  '<a b=">"/>',
  "<a b='\"'/>",
  '<a b="x\'/>',
  '< a/>',
  '<a />',
  '</ a>',
  '</a >',
  '<a/ >',
  '<a\u00b7/>',
  '<\u00b7a/>',
  '<\u00e9/>',
  '<a\u0300/>',
  '<\u0300a/>',
  '<\u2070/>',
  // DTD pieces (always refused by the server; the oracle still judges them)
  '<!DOCTYPE create>',
  '<!ELEMENT a ANY>',
  '<!ENTITY a "b">',
  '<!ATTLIST a b CDATA #IMPLIED>',
  // characters
  ' ',
  '\n',
  '\r',
  '\r\n',
  '\t',
  'junk',
  '<',
  '>',
  '"',
  "'",
  '=',
  '/',
  '\u00a0',
  '\u0085',
  '\u2028',
  '\ufeff',
  '\ufffd',
  '\ufffe',
  '\u0001',
  '\u000b',
  '\u007f',
  '\u0080',
  '\ud83d\ude00',
  'é',
  '\u3000',
];

const ELEMENT_TOKENS = [
  '<create>',
  '</create>',
  '<create/>',
  '<transactions id="70001">',
  '</transactions>',
  '<account id="70001" balance="5"/>',
  '<symbol sym="SPY">',
  '</symbol>',
  '<account id="70001">',
  '</account>',
  '10',
  '<order sym="SPY" amount="1" limit="2"/>',
];

type Mutation =
  | { kind: 'insert'; at: number; fragment: string }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'bytes'; at: number; bytes: readonly number[] }
  /** Inserted where markup may stand: right after a '>' (the n-th one). */
  | { kind: 'between'; at: number; fragment: string };

/** Usually legal between tags: these keep many documents well-formed, so both verdicts are tested. */
const CONTENT_FRAGMENTS = [
  '<!-- c -->',
  '<!---->',
  '<!-- - -->',
  '<!-- <create/> -->',
  '<?pi?>',
  '<?pi body > text?>',
  '<?xml-stylesheet href="a"?>',
  '<?xmlx?>',
  '<![CDATA[x]]>',
  '<![CDATA[]]>',
  '<![CDATA[<account id="70002" balance="5"/>]]>',
  '<![CDATA[ ]] ]]>',
  '&amp;',
  '&#38;',
  '&#x10FFFF;',
  ' ',
  '\n',
  '\r\n',
  '\t',
  '\u00a0',
  '\u2028',
  '\ufeff',
  'é',
  '\ud83d\ude00',
  '<a/>',
  '<a></a>',
  '<_a/>',
  '<a:b/>',
  '<a\u00b7/>',
  '<\u00e9/>',
  '<a b="1"/>',
  '<a b=">"/>',
  "<a b='\"'/>",
  '<a />',
  '</a >',
];

const fragment = fc.constantFrom(...FRAGMENTS);
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('between' as const),
      at: fc.nat(),
      fragment: fc.constantFrom(...CONTENT_FRAGMENTS),
    }),
  },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), fragment }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('delete' as const),
      at: fc.nat(),
      length: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('bytes' as const),
      at: fc.nat(),
      bytes: fc.constantFrom([0xff], [0xc3], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xef, 0xbb, 0xbf]),
    }),
  },
);

function applyMutations(base: string, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(base, 'utf8');
  for (const change of mutations) {
    // Character positions for text, so a UTF-8 sequence of the base is not cut by accident.
    const text = bytes.toString('latin1');
    const boundaries = [...text.matchAll(/>/g)].map((match) => (match.index as number) + 1);
    const at =
      change.kind === 'between' && boundaries.length > 0
        ? (boundaries[change.at % boundaries.length] as number)
        : change.at % (text.length + 1);
    const head = Buffer.from(text.slice(0, at), 'latin1');
    if (change.kind === 'insert' || change.kind === 'between')
      bytes = Buffer.concat([head, Buffer.from(change.fragment, 'utf8'), Buffer.from(text.slice(at), 'latin1')]);
    else if (change.kind === 'delete')
      bytes = Buffer.concat([head, Buffer.from(text.slice(at + change.length), 'latin1')]);
    else bytes = Buffer.concat([head, Buffer.from(change.bytes), Buffer.from(text.slice(at), 'latin1')]);
  }
  return bytes;
}

const corpusDocument: fc.Arbitrary<Buffer> = fc.oneof(
  // A real request with one to three changes anywhere.
  {
    weight: 5,
    arbitrary: fc
      .tuple(fc.constantFrom(...BASES), fc.array(mutation, { minLength: 1, maxLength: 3 }))
      .map(([base, mutations]) => applyMutations(base, mutations)),
  },
  // A real request with something before or after it (the "&amp;" after the root, "junk", ...).
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.constantFrom(...BASES), fc.array(fragment, { maxLength: 2 }), fc.array(fragment, { maxLength: 2 }))
      .map(([base, before, after]) => Buffer.from(before.join('') + base + after.join(''), 'utf8')),
  },
  // Token soup.
  {
    weight: 2,
    arbitrary: fc
      .array(fc.oneof(fc.constantFrom(...ELEMENT_TOKENS), fragment), { minLength: 1, maxLength: 8 })
      .map((tokens) => Buffer.from(tokens.join(''), 'utf8')),
  },
);

function show(body: Buffer): string {
  return JSON.stringify(body.toString('utf8')).slice(0, 300);
}

/** Refusals for the server's own rules, which a well-formed document may still meet. */
const POLICY_REFUSAL =
  /^(DOCTYPE and entity declarations are not allowed|unknown root element|request must be UTF-8|request nests elements deeper)/;

describe('well-formedness: libxml2 is the judge', function () {
  this.timeout(120_000);
  let corpus: Buffer[] = [];
  let wellFormed: boolean[] = [];

  before(async () => {
    const unique = new Map<string, Buffer>();
    for (const document of fc.sample(corpusDocument, { seed: SEED, numRuns: CORPUS_SIZE }))
      unique.set(document.toString('hex'), document);
    corpus = [...unique.values()];
    wellFormed = await libxml2WellFormed(corpus);
  });

  it(
    titleNeeding('the xmllint program gives every document of the corpus the same verdict', XMLLINT),
    async function () {
      skipUnless(this, XMLLINT);
      const byXmllint = await xmllintWellFormed(corpus);
      const differ = corpus.flatMap((body, index) =>
        byXmllint[index] === wellFormed[index]
          ? []
          : [
              `${wellFormed[index] ? 'well-formed' : 'malformed'} in process, ${byXmllint[index] ? 'well-formed' : 'malformed'} by xmllint: ${show(body)}`,
            ],
      );
      expect(differ).to.deep.equal([]);
    },
  );

  it('the corpus holds thousands of documents, both well-formed and malformed ones', () => {
    const good = wellFormed.filter(Boolean).length;
    expect(corpus.length).to.be.at.least(CORPUS_SIZE / 2);
    expect(good, 'well-formed documents').to.be.at.least(corpus.length / 10);
    expect(corpus.length - good, 'malformed documents').to.be.at.least(corpus.length / 4);
  });

  it('every document libxml2 finds malformed is refused whole, and is never a complete document', () => {
    const accepted: string[] = [];
    const complete: string[] = [];
    corpus.forEach((body, index) => {
      if (wellFormed[index]) return;
      if (parseRequest(body).kind !== 'error') accepted.push(show(body));
      if (isCompleteDocument(body)) complete.push(show(body));
    });
    expect(accepted, 'malformed documents that were parsed as requests').to.deep.equal([]);
    expect(complete, 'malformed documents taken as complete').to.deep.equal([]);
  });

  it('no document libxml2 finds well-formed is refused as malformed', () => {
    const refused: string[] = [];
    corpus.forEach((body, index) => {
      if (!wellFormed[index]) return;
      const result = parseRequest(body);
      if (result.kind === 'error' && !POLICY_REFUSAL.test(result.message))
        refused.push(`${show(body)}: ${result.message}`);
    });
    expect(refused, 'well-formed documents refused as malformed').to.deep.equal([]);
  });

  describe('the reported documents, each of which would change something if applied', () => {
    const CASES: Array<[string, string]> = [
      ['a reference after the root', '<create><account id="70001" balance="5"/></create>&amp;'],
      ['a character reference after the root', '<create><account id="70001" balance="5"/></create>&#65;'],
      ['CDATA after the root', '<create><account id="70001" balance="5"/></create><![CDATA[x]]>'],
      ['an XML declaration after the root', '<create><account id="70001" balance="5"/></create><?xml version="1.0"?>'],
      ['text after the root', '<create/>junk'],
      ['text after a request that creates an account', '<create><account id="70001" balance="5"/></create>junk'],
      ['text before the root', 'junk<create><account id="70001" balance="5"/></create>'],
      ['"--" inside a comment', '<create><!-- a -- b --><account id="70001" balance="5"/></create>'],
      ['a comment ending in "--->"', '<create><!-- a ---><account id="70001" balance="5"/></create>'],
      ['an XML declaration inside the root', '<create><?xml version="1.0"?><account id="70001" balance="5"/></create>'],
      [
        'an XML declaration after a comment',
        '<!-- first --><?xml version="1.0"?><create><account id="70001" balance="5"/></create>',
      ],
      ['an XML declaration after a space', ' <?xml version="1.0"?><create><account id="70001" balance="5"/></create>'],
      ['a processing instruction named XML (any case)', '<create><?XmL a?><account id="70001" balance="5"/></create>'],
      ['a processing instruction without a target', '<create><? x?><account id="70001" balance="5"/></create>'],
      ['"]]>" in text', '<create>]]><account id="70001" balance="5"/></create>'],
      ['"]]>" in the shares text', '<create><symbol sym="SPY"><account id="70001">10]]></account></symbol></create>'],
      ['a declaration without a version', '<?xml encoding="UTF-8"?><create><account id="70001" balance="5"/></create>'],
      ['a declaration with nothing in it', '<?xml?><create><account id="70001" balance="5"/></create>'],
      [
        'a declaration with standalone="maybe"',
        '<?xml version="1.0" standalone="maybe"?><create><account id="70001" balance="5"/></create>',
      ],
      [
        'a declaration with its attributes out of order',
        '<?xml encoding="UTF-8" version="1.0"?><create><account id="70001" balance="5"/></create>',
      ],
      ['a declaration of version 2.0', '<?xml version="2.0"?><create><account id="70001" balance="5"/></create>'],
      [
        'a declaration of UTF-16 over UTF-8 bytes',
        '<?xml version="1.0" encoding="UTF-16"?><create><account id="70001" balance="5"/></create>',
      ],
      ['a second root element after the first', '<create><account id="70001" balance="5"/></create><create/>'],
      ['an element name starting with a digit', '<create><account id="70001" balance="5"/><1a/></create>'],
      ['attributes without a space between them', '<create><account id="70001"balance="5"/></create>'],
      ['a raw "<" in an attribute value', '<create><account id="70001" balance="5" x="<"/></create>'],
    ];
    for (const [name, xml] of CASES) {
      it(`refuses ${name}`, async () => {
        const body = Buffer.from(xml, 'utf8');
        const [oracle] = await libxml2WellFormed([body]);
        expect(oracle, `libxml2 finds ${JSON.stringify(xml)} malformed`).to.equal(false);
        const result = parseRequest(body);
        expect(result.kind, JSON.stringify(result)).to.equal('error');
        expect(isCompleteDocument(body)).to.equal(false);
      });
    }
  });
});
