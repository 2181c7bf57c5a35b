-- Indexes for the operator's read-only API (server/store/operator-reads.ts):
-- each endpoint's cost is bounded by what it returns, not by the size of the
-- tables. Both are partial, so the matcher pays for them only on the rows they
-- hold (measured by scripts/bench-api.ts, see docs/operations.md). The matcher
-- needs neither: its book reads cannot use them (their predicates do not
-- imply these), and a cancel that picked orders_open_by_account over the
-- primary key would still be a key lookup (tests/integration/plan-stability
-- checks its plans once these exist).
--
-- Building them on an existing large orders table locks out writers once, at
-- the first start of this version (CREATE INDEX CONCURRENTLY cannot run inside
-- the migration's transaction): upgrade with the servers stopped.

-- An account's open orders (its reservations and its order list). One entry
-- per order that rests, and one per partial fill of it.
CREATE INDEX IF NOT EXISTS orders_open_by_account ON orders (account_id, id)
  WHERE open_shares > 0;

-- A symbol's orders that traded, newest first: the trade tape walks it and
-- stops after the trades asked for. An order enters it at its first fill
-- (as the incoming order when its row is written, or as a resting order when
-- its open shares drop); orders that never trade are not in it.
CREATE INDEX IF NOT EXISTS orders_traded ON orders (sym, id)
  WHERE open_shares + coalesce(canceled_shares, 0) < abs(amount);
