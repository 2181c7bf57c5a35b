/** Means and spreads over repeated runs. */
export function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** Sample standard deviation; 0 for a single run (no spread measured). */
export function stddev(values: number[]): number {
  if (values.length < 2) return 0;
  const average = mean(values);
  return Math.sqrt(values.reduce((sum, value) => sum + (value - average) ** 2, 0) / (values.length - 1));
}

export type Spread = { mean: number; sd: number; min: number; max: number };

export function spread(values: number[]): Spread {
  if (values.length === 0) return { mean: Number.NaN, sd: Number.NaN, min: Number.NaN, max: Number.NaN };
  return { mean: mean(values), sd: stddev(values), min: Math.min(...values), max: Math.max(...values) };
}

export const plusMinus = (value: Spread, digits: number): string =>
  Number.isNaN(value.mean) ? 'n/a' : `${value.mean.toFixed(digits)} ± ${value.sd.toFixed(digits)}`;
