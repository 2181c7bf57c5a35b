/** Records every grant of cash and shares a test makes, so invariants can be checked exactly. */
import type pg from 'pg';
import type { ExpectedTotals } from '../../client/invariants.js';

export class GrantLedger {
  private readonly cash: string[] = [];
  private readonly shares = new Map<string, string[]>();

  addCash(amount: string): void {
    this.cash.push(amount);
  }

  addShares(sym: string, amount: string): void {
    const list = this.shares.get(sym) ?? [];
    list.push(amount);
    this.shares.set(sym, list);
  }

  /** Exact sums, computed by PostgreSQL NUMERIC rather than JavaScript numbers. */
  async totals(pool: pg.Pool): Promise<ExpectedTotals> {
    const sum = async (values: string[]): Promise<string> =>
      (
        await pool.query<{ total: string }>(
          'SELECT coalesce(sum(v::numeric), 0)::text AS total FROM unnest($1::text[]) v',
          [values],
        )
      ).rows[0]?.total ?? '0';
    const shares: Record<string, string> = {};
    for (const [sym, values] of this.shares) shares[sym] = await sum(values);
    return { cash: await sum(this.cash), shares };
  }
}
