import { expect } from 'chai';
import { renderRequestError, renderResults } from '../../server/protocol/render-reply.js';
import { element, errorElement as errorWithCode } from '../../server/protocol/replies.js';
import { detailedProblem, problem } from '../../server/errors.js';

/** The rendering of an error depends only on its message. */
const errorElement = (attributes: Parameters<typeof errorWithCode>[0], message: string) =>
  errorWithCode(attributes, detailedProblem('invalid_item', message));
import { parseResults } from '../support/xml.js';

const DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>';
/** Characters outside the XML 1.0 Char production can never appear in a well-formed document. */
const NOT_XML_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

describe('renderResults', () => {
  it('renders an empty result list as <results/> after the declaration', () => {
    expect(renderResults([])).to.equal(`${DECLARATION}\n<results/>`);
  });

  it('renders results in order, with the declaration on the first line', () => {
    const xml = renderResults([
      element('created', [['id', '123456']]),
      element('created', [
        ['sym', 'SPY'],
        ['id', '123456'],
      ]),
      errorWithCode([['id', '7']], problem('account_exists')),
      element('opened', [
        ['sym', 'SPY'],
        ['amount', '100'],
        ['limit', '145.67'],
        ['id', '1'],
      ]),
      element(
        'status',
        [['id', '1']],
        [
          element('open', [['shares', '100']]),
          element('executed', [
            ['shares', '200'],
            ['price', '125'],
            ['time', '1519348326'],
          ]),
        ],
      ),
      element(
        'canceled',
        [['id', '2']],
        [
          element('canceled', [
            ['shares', '50'],
            ['time', '1519348327'],
          ]),
        ],
      ),
    ]);
    expect(xml).to.equal(
      [
        DECLARATION,
        '<results>',
        '  <created id="123456"/>',
        '  <created sym="SPY" id="123456"/>',
        '  <error id="7">account already exists</error>',
        '  <opened sym="SPY" amount="100" limit="145.67" id="1"/>',
        '  <status id="1">',
        '    <open shares="100"/>',
        '    <executed shares="200" price="125" time="1519348326"/>',
        '  </status>',
        '  <canceled id="2">',
        '    <canceled shares="50" time="1519348327"/>',
        '  </canceled>',
        '</results>',
      ].join('\n'),
    );
    expect(xml.split('\n')[0]).to.equal(DECLARATION);
  });

  it('keeps attribute order as given', () => {
    const xml = renderResults([
      errorElement(
        [
          ['limit', '1'],
          ['sym', 'X'],
          ['amount', '2'],
        ],
        'why',
      ),
    ]);
    expect(xml).to.contain('<error limit="1" sym="X" amount="2">why</error>');
  });

  it('escapes special characters in attributes and text', () => {
    const xml = renderResults([errorElement([['sym', 'a"<&>\'b']], 'x < y & "z" > \'w\'')]);
    expect(xml).to.equal(
      `${DECLARATION}\n<results>\n  <error sym="a&quot;&lt;&amp;&gt;'b">x &lt; y &amp; "z" &gt; 'w'</error>\n</results>`,
    );
    const [node] = parseResults(xml);
    expect(node?.attributes).to.deep.equal({ sym: 'a"<&>\'b' });
    expect(node?.text).to.equal('x < y & "z" > \'w\'');
  });

  it('escapes "&" even where it starts something that looks like a reference', () => {
    // A decoded "&amp;amp;" must echo as "&amp;amp;", and a decoded "&#38;#0;" must not become
    // the illegal reference "&#0;" (xmlbuilder2, the renderer before, wrote both unescaped).
    const xml = renderResults([
      errorElement(
        [
          ['sym', '&amp;'],
          ['id', '&#0;'],
        ],
        '&lt; &foo; &#65;',
      ),
    ]);
    expect(xml).to.contain('<error sym="&amp;amp;" id="&amp;#0;">&amp;lt; &amp;foo; &amp;#65;</error>');
    const [node] = parseResults(xml);
    expect(node?.attributes).to.deep.equal({ sym: '&amp;', id: '&#0;' });
    expect(node?.text).to.equal('&lt; &foo; &#65;');
  });

  it('escapes "]]>" in text', () => {
    expect(renderResults([errorElement([], 'a ]]> b')])).to.not.contain(']]>');
  });

  it('writes multibyte text as UTF-8 characters', () => {
    expect(renderResults([errorElement([], 'é€😀')])).to.equal(
      `${DECLARATION}\n<results>\n  <error>é€😀</error>\n</results>`,
    );
  });

  it('never emits characters that are illegal in XML 1.0', () => {
    const xml = renderResults([errorElement([['id', 'a\u0001b']], 'bad char \u0001 here \u001F')]);
    expect(xml).to.not.match(NOT_XML_CHAR);
  });
});

describe('renderRequestError', () => {
  it('renders <results><error>why</error></results>', () => {
    expect(renderRequestError(detailedProblem('invalid_request', 'malformed XML'))).to.equal(
      `${DECLARATION}\n<results>\n  <error>malformed XML</error>\n</results>`,
    );
  });

  it('escapes the reason', () => {
    const xml = renderRequestError(detailedProblem('invalid_request', "unknown root element 'a<b' & more"));
    expect(xml).to.contain("<error>unknown root element 'a&lt;b' &amp; more</error>");
    const nodes = parseResults(xml);
    expect(nodes).to.have.length(1);
    expect(nodes[0]?.name).to.equal('error');
  });

  it('stays well-formed when the reason quotes an illegal character', () => {
    expect(
      renderRequestError(detailedProblem('invalid_request', "malformed XML: char '\u0001' is not expected.")),
    ).to.not.match(NOT_XML_CHAR);
  });
});
