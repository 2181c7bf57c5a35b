import { expect } from 'chai';
import { seededRandom as prng } from '../../client/random.js';
import {
  absDecimal,
  canonicalDecimal,
  checkDecimal,
  MAX_FRACTION_DIGITS,
  MAX_INTEGER_DIGITS,
} from '../../server/protocol/decimal.js';

function digits(random: () => number, count: number): string {
  let text = '';
  for (let i = 0; i < count; i++) text += String(Math.floor(random() * 10));
  return text;
}

describe('checkDecimal', () => {
  const accepted: Array<[string, { negative: boolean; zero: boolean }]> = [
    ['0', { negative: false, zero: true }],
    ['-0', { negative: false, zero: true }],
    ['0.000', { negative: false, zero: true }],
    ['-0.000', { negative: false, zero: true }],
    ['000', { negative: false, zero: true }],
    ['5', { negative: false, zero: false }],
    ['-5', { negative: true, zero: false }],
    ['1.5', { negative: false, zero: false }],
    ['-0.5', { negative: true, zero: false }],
    ['007', { negative: false, zero: false }],
    ['145.67', { negative: false, zero: false }],
    ['0.0000000000000001', { negative: false, zero: false }],
    ['1.50000000000000000000', { negative: false, zero: false }],
    ['9'.repeat(MAX_INTEGER_DIGITS), { negative: false, zero: false }],
    [`-${'9'.repeat(MAX_INTEGER_DIGITS)}.${'9'.repeat(MAX_FRACTION_DIGITS)}`, { negative: true, zero: false }],
    [`${'0'.repeat(30)}1`, { negative: false, zero: false }],
  ];
  for (const [text, flags] of accepted) {
    it(`accepts ${JSON.stringify(text)}`, () => {
      expect(checkDecimal(text)).to.deep.equal({ ok: true, ...flags });
    });
  }

  const rejected = [
    '',
    ' ',
    '+5',
    '+0',
    '--5',
    '-',
    '.',
    '.5',
    '5.',
    '-.5',
    '1e3',
    '1E3',
    '1e-3',
    ' 5',
    '5 ',
    '\t5',
    '5\n',
    '1,5',
    '1_000',
    '0x10',
    '0b1',
    'NaN',
    'Infinity',
    '-Infinity',
    'abc',
    '1.2.3',
    '$5',
    '5$',
    '１',
    '٣',
    '1'.repeat(MAX_INTEGER_DIGITS + 1),
    `0.${'1'.repeat(MAX_FRACTION_DIGITS + 1)}`,
    '1'.repeat(65),
    `0.${'0'.repeat(70)}`,
  ];
  for (const text of rejected) {
    it(`rejects ${JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)}`, () => {
      const result = checkDecimal(text);
      expect(result.ok).to.equal(false);
      if (!result.ok) expect(result.reason).to.be.a('string').and.not.empty;
    });
  }
});

describe('canonicalDecimal', () => {
  const table: Array<[string, string]> = [
    ['125.000', '125'],
    ['0.50', '0.5'],
    ['-0.0', '0'],
    ['-0', '0'],
    ['0', '0'],
    ['0.000', '0'],
    ['000', '0'],
    ['007.10', '7.1'],
    ['100', '100'],
    ['10.0', '10'],
    ['1234.25', '1234.25'],
    ['-5.50', '-5.5'],
    ['-0.001', '-0.001'],
    ['0.0001000', '0.0001'],
    ['00.5', '0.5'],
    [' 42.00 ', '42'],
    ['123456789012345678901234567890.123456789000', '123456789012345678901234567890.123456789'],
    [`1${'0'.repeat(40)}`, `1${'0'.repeat(40)}`],
    [`0.${'0'.repeat(30)}1`, `0.${'0'.repeat(30)}1`],
    ['99999999999999999999999999999999999999', '99999999999999999999999999999999999999'],
  ];
  for (const [input, output] of table) {
    it(`${JSON.stringify(input)} -> ${JSON.stringify(output)}`, () => {
      expect(canonicalDecimal(input)).to.equal(output);
    });
  }

  for (const bad of ['', '1e3', '1.5E+20', 'abc', '+5', '.5', 'NaN']) {
    it(`throws RangeError for ${JSON.stringify(bad)}`, () => {
      expect(() => canonicalDecimal(bad)).to.throw(RangeError);
    });
  }

  it('never writes an exponent and keeps the value (generated cases)', () => {
    const random = prng(12345);
    for (let i = 0; i < 2000; i++) {
      const negative = random() < 0.5;
      const leadingZeros = '0'.repeat(Math.floor(random() * 4));
      const integerPart = digits(random, 1 + Math.floor(random() * 30));
      const hasFraction = random() < 0.7;
      const fractionPart = hasFraction
        ? digits(random, 1 + Math.floor(random() * 20)) + '0'.repeat(Math.floor(random() * 4))
        : '';
      const input = `${negative ? '-' : ''}${leadingZeros}${integerPart}${hasFraction ? `.${fractionPart}` : ''}`;

      const integer = integerPart.replace(/^0+/, '') || '0';
      const fraction = fractionPart.replace(/0+$/, '');
      const isZero = integer === '0' && fraction === '';
      const expected = `${negative && !isZero ? '-' : ''}${integer}${fraction ? `.${fraction}` : ''}`;

      const output = canonicalDecimal(input);
      expect(output, input).to.equal(expected);
      expect(output, input).to.match(/^-?(0|[1-9]\d*)(\.\d*[1-9])?$/);
      expect(canonicalDecimal(output), `idempotent for ${input}`).to.equal(output);
    }
  });
});

describe('absDecimal', () => {
  const table: Array<[string, string]> = [
    ['-5.50', '5.5'],
    ['5.50', '5.5'],
    ['-0', '0'],
    ['-0.000', '0'],
    ['3', '3'],
    ['-100', '100'],
    ['-0000.25', '0.25'],
  ];
  for (const [input, output] of table) {
    it(`${JSON.stringify(input)} -> ${JSON.stringify(output)}`, () => {
      expect(absDecimal(input)).to.equal(output);
    });
  }
});
