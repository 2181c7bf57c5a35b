/** Means and spreads over repeated runs, and how tables print them. */
export function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** The mean of the finite values: a run without a CPU sample or a rate leaves NaN, which is not a zero. */
export function finiteMean(values: number[]): number {
  return mean(values.filter((value) => Number.isFinite(value)));
}

/** Sample standard deviation; 0 for a single run (no spread measured). */
export function stddev(values: number[]): number {
  if (values.length < 2) return 0;
  const average = mean(values);
  return Math.sqrt(values.reduce((sum, value) => sum + (value - average) ** 2, 0) / (values.length - 1));
}

export type Spread = { count: number; mean: number; sd: number; min: number; max: number };

export function spread(values: number[]): Spread {
  if (values.length === 0) return { count: 0, mean: Number.NaN, sd: Number.NaN, min: Number.NaN, max: Number.NaN };
  return {
    count: values.length,
    mean: mean(values),
    sd: stddev(values),
    min: Math.min(...values),
    max: Math.max(...values),
  };
}

/** A number for a table, or 'n/a' when not measured. */
export const fixed = (value: number, digits = 0): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');

/** "1234" for one run, "1234 ± 56" (sample standard deviation) over several. */
export const meanAndSd = (value: Spread, digits = 0): string =>
  value.count > 1 ? `${fixed(value.mean, digits)} ± ${fixed(value.sd, digits)}` : fixed(value.mean, digits);
