/**
 * Exact decimals for the reference model (reference-exchange.ts): a BigInt count of units of
 * 10^-scale. Sums, differences and products are exact by construction, with no precision
 * setting to get wrong (decimal.js, for one, rounds every result to 20 significant digits by
 * default, and a product of a 16-place amount and a 16-place limit has 32 places); the model
 * never divides. The server does its arithmetic in PostgreSQL NUMERIC, so this shares no
 * code with it.
 */
const SHAPE = /^(-?)(\d+)(?:\.(\d+))?$/;

export class Decimal {
  static readonly ZERO = new Decimal(0n, 0);

  private constructor(
    private readonly units: bigint,
    private readonly scale: number,
  ) {}

  /** A plain decimal as the wire carries it ('-' optional, no exponent; leading and trailing zeros allowed). */
  static parse(text: string): Decimal {
    const match = SHAPE.exec(text.trim());
    if (!match) throw new RangeError(`not a plain decimal: ${JSON.stringify(text)}`);
    const fraction = match[3] ?? '';
    const units = BigInt(`${match[2] ?? '0'}${fraction}`);
    return new Decimal(match[1] === '-' ? -units : units, fraction.length);
  }

  private static aligned(a: Decimal, b: Decimal): [bigint, bigint, number] {
    const scale = Math.max(a.scale, b.scale);
    return [a.units * 10n ** BigInt(scale - a.scale), b.units * 10n ** BigInt(scale - b.scale), scale];
  }

  plus(other: Decimal): Decimal {
    const [a, b, scale] = Decimal.aligned(this, other);
    return new Decimal(a + b, scale);
  }

  minus(other: Decimal): Decimal {
    const [a, b, scale] = Decimal.aligned(this, other);
    return new Decimal(a - b, scale);
  }

  times(other: Decimal): Decimal {
    return new Decimal(this.units * other.units, this.scale + other.scale);
  }

  compare(other: Decimal): -1 | 0 | 1 {
    const [a, b] = Decimal.aligned(this, other);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  isZero(): boolean {
    return this.units === 0n;
  }

  isNegative(): boolean {
    return this.units < 0n;
  }

  isPositive(): boolean {
    return this.units > 0n;
  }

  abs(): Decimal {
    return this.units < 0n ? new Decimal(-this.units, this.scale) : this;
  }

  min(other: Decimal): Decimal {
    return this.compare(other) <= 0 ? this : other;
  }

  /** Canonical text, as the server writes computed numbers: no exponent, no trailing zeros after the point. */
  toString(): string {
    const digits = (this.units < 0n ? -this.units : this.units).toString().padStart(this.scale + 1, '0');
    const integer = digits.slice(0, digits.length - this.scale);
    const fraction = digits.slice(digits.length - this.scale).replace(/0+$/, '');
    const sign = this.units < 0n ? '-' : '';
    return fraction.length > 0 ? `${sign}${integer}.${fraction}` : `${sign}${integer}`;
  }
}

/** The canonical form of a decimal text (for comparing PostgreSQL NUMERIC text with the model). */
export function canonical(text: string): string {
  return Decimal.parse(text).toString();
}
