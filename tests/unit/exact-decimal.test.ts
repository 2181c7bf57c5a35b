/** The reference model's decimals (tests/support/exact-decimal.ts): exact, canonical, no precision to run out of. */
import { expect } from 'chai';
import { Decimal, canonical } from '../support/exact-decimal.js';

const d = (text: string): Decimal => Decimal.parse(text);

describe("the reference model's exact decimals", () => {
  it('adds, subtracts and multiplies exactly', () => {
    expect(d('0.1').plus(d('0.2')).toString()).to.equal('0.3');
    expect(d('0.3').minus(d('0.1')).minus(d('0.2')).toString()).to.equal('0');
    expect(d('2.5').times(d('10.5')).toString()).to.equal('26.25');
    expect(d('1').minus(d('1.75')).toString()).to.equal('-0.75');
    // A 16-place amount times a 16-place limit has 32 places, all kept.
    expect(d('0.0000000000000001').times(d('0.0000000000000003')).toString()).to.equal(`0.${'0'.repeat(31)}3`);
    expect(
      d(`${'9'.repeat(24)}.5`)
        .times(d('2'))
        .toString(),
    ).to.equal(`1${'9'.repeat(23)}9`);
  });

  it('compares across scales and signs', () => {
    expect(d('10.50').compare(d('10.5'))).to.equal(0);
    expect(d('9.99').compare(d('10'))).to.equal(-1);
    expect(d('-1').compare(d('-2'))).to.equal(1);
    expect(d('0.25').min(d('0.3')).toString()).to.equal('0.25');
    expect(d('-0.0').isZero()).to.equal(true);
    expect(d('-3').abs().toString()).to.equal('3');
    expect([d('-0.5').isNegative(), d('0.5').isPositive(), d('0').isPositive()]).to.deep.equal([true, true, false]);
  });

  it('writes canonical text: no leading zeros, no trailing zeros after the point, no "-0"', () => {
    expect(['007', '1.50', '0.000', '-0', '-0.250', '00.5', '120'].map(canonical)).to.deep.equal([
      '7',
      '1.5',
      '0',
      '0',
      '-0.25',
      '0.5',
      '120',
    ]);
  });

  it('refuses what is not a plain decimal', () => {
    for (const text of ['', '1e5', '+1', '.5', '1.', 'abc', '1,5']) {
      expect(() => Decimal.parse(text), text).to.throw(RangeError);
    }
  });
});
