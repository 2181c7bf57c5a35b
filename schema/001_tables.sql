-- Exchange tables. Applied at every start: every statement is idempotent.
-- Money and shares are unconstrained NUMERIC: exact decimals, never floats.
--
-- Written for the matcher's speed (schema/002_matching.sql holds the table lock
-- of every write batch, so its time per order bounds the exchange's throughput):
-- - No foreign keys. The rows that would reference others (positions, orders,
--   executions) are only written by the functions of 002_matching.sql, which
--   check that the account, symbol or order exists, and no row is ever
--   deleted. The foreign keys cost a trigger and a locking lookup per written
--   row: about 30% of the matcher's time per order.
-- - CHECK constraints compare with numeric literals (0.0, not 0): PostgreSQL
--   deserializes and plans every CHECK expression at each INSERT or UPDATE
--   statement, and an integer 0 adds a cast to fold each time.

-- One row naming this database instance, so caches can key on it (a reset
-- database gets a new id and never meets old cache entries).
CREATE TABLE IF NOT EXISTS exchange_instance (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  instance_id uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO exchange_instance DEFAULT VALUES ON CONFLICT DO NOTHING;

-- Half-empty pages (fillfactor 50) for the two tables updated at every order:
-- room for a row's new version on its own page makes the update HOT (no index
-- entry to add).
CREATE TABLE IF NOT EXISTS accounts (
  id      text PRIMARY KEY,
  balance numeric NOT NULL CONSTRAINT accounts_balance_not_negative CHECK (balance >= 0.0)
) WITH (fillfactor = 50);

CREATE TABLE IF NOT EXISTS symbols (
  sym text PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS positions (
  account_id text NOT NULL,
  sym        text NOT NULL,
  shares     numeric NOT NULL CONSTRAINT positions_shares_not_negative CHECK (shares >= 0.0),
  PRIMARY KEY (account_id, sym)
) WITH (fillfactor = 50);

-- Order ids come from this sequence: positive, increasing in arrival order,
-- and the id is the time priority, so updating a row never changes its place.
CREATE SEQUENCE IF NOT EXISTS order_ids AS bigint START 1;

CREATE TABLE IF NOT EXISTS orders (
  id              bigint PRIMARY KEY DEFAULT nextval('order_ids'),
  account_id      text NOT NULL,
  sym             text NOT NULL,
  -- Signed as sent: positive buys, negative sells.
  amount          numeric NOT NULL,
  limit_price     numeric NOT NULL,
  open_shares     numeric NOT NULL,
  canceled_shares numeric,
  canceled_at     bigint
  -- CHECK: orders_consistent, below.
);
ALTER SEQUENCE order_ids OWNED BY orders.id;

-- Every rule an order row obeys, as one function of the row: one CHECK of one
-- whole-row reference costs PostgreSQL far less per statement than the seven
-- CHECK expressions it replaces (each deserialized and planned at every INSERT
-- or UPDATE, the largest single cost of the matcher when they were separate).
CREATE OR REPLACE FUNCTION order_row_ok(o orders) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN o.amount <> 0.0 AND o.limit_price > 0.0
     AND o.open_shares >= 0.0 AND o.open_shares <= abs(o.amount)
     AND (o.canceled_shares IS NULL) = (o.canceled_at IS NULL)
     AND (o.canceled_shares IS NULL OR (o.canceled_shares > 0.0 AND o.open_shares = 0.0));
END $$;

-- The two sides of each book, in matching order; only open orders are indexed.
-- (Orders are only ever looked up by id, or through these.)
CREATE INDEX IF NOT EXISTS orders_open_buys ON orders (sym, limit_price DESC, id)
  WHERE open_shares > 0 AND amount > 0;
CREATE INDEX IF NOT EXISTS orders_open_sells ON orders (sym, limit_price ASC, id)
  WHERE open_shares > 0 AND amount < 0;
DROP INDEX IF EXISTS orders_by_account;

CREATE TABLE IF NOT EXISTS executions (
  id            bigserial PRIMARY KEY,
  buy_order_id  bigint NOT NULL,
  sell_order_id bigint NOT NULL,
  shares        numeric NOT NULL CONSTRAINT executions_shares_positive CHECK (shares > 0.0),
  price         numeric NOT NULL CONSTRAINT executions_price_positive CHECK (price > 0.0),
  executed_at   bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_buy ON executions (buy_order_id, id);
CREATE INDEX IF NOT EXISTS executions_by_sell ON executions (sell_order_id, id);

-- Upgrades a database made by an earlier version of this file (no-ops on a new
-- one): drop the foreign keys and the constraints replaced above, add the new
-- ones where missing (ADD CONSTRAINT has no IF NOT EXISTS).
ALTER TABLE accounts SET (fillfactor = 50);
ALTER TABLE positions SET (fillfactor = 50);
ALTER TABLE positions DROP CONSTRAINT IF EXISTS positions_account_id_fkey, DROP CONSTRAINT IF EXISTS positions_sym_fkey;
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_account_id_fkey, DROP CONSTRAINT IF EXISTS orders_sym_fkey,
  DROP CONSTRAINT IF EXISTS orders_amount_check, DROP CONSTRAINT IF EXISTS orders_limit_price_check,
  DROP CONSTRAINT IF EXISTS orders_open_shares_check, DROP CONSTRAINT IF EXISTS orders_canceled_shares_check,
  DROP CONSTRAINT IF EXISTS orders_check, DROP CONSTRAINT IF EXISTS orders_check1, DROP CONSTRAINT IF EXISTS orders_check2;
ALTER TABLE executions DROP CONSTRAINT IF EXISTS executions_buy_order_id_fkey, DROP CONSTRAINT IF EXISTS executions_sell_order_id_fkey;
DO $$
DECLARE
  wanted record;
BEGIN
  FOR wanted IN
    SELECT * FROM (VALUES
      ('accounts', 'accounts_balance_check', 'accounts_balance_not_negative', 'balance >= 0.0'),
      ('positions', 'positions_shares_check', 'positions_shares_not_negative', 'shares >= 0.0'),
      ('executions', 'executions_shares_check', 'executions_shares_positive', 'shares > 0.0'),
      ('executions', 'executions_price_check', 'executions_price_positive', 'price > 0.0'),
      ('orders', NULL, 'orders_consistent', 'order_row_ok(orders)')
    ) AS constraints (table_name, old_name, name, expression)
  LOOP
    IF wanted.old_name IS NOT NULL THEN
      EXECUTE format('ALTER TABLE %I DROP CONSTRAINT IF EXISTS %I', wanted.table_name, wanted.old_name);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = wanted.table_name::regclass AND conname = wanted.name) THEN
      EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%s)', wanted.table_name, wanted.name, wanted.expression);
    END IF;
  END LOOP;
END $$;

-- Each order's fills, oldest first by execution id.
CREATE OR REPLACE VIEW order_fills AS
  SELECT buy_order_id AS order_id, id AS execution_id, shares, price, executed_at FROM executions
  UNION ALL
  SELECT sell_order_id, id, shares, price, executed_at FROM executions;

-- Writers (orders and cancels) lock this table before their transaction takes
-- its snapshot, so they never run concurrently, in one process or many: under
-- SERIALIZABLE they would otherwise abort each other (often on false positives
-- from index-page predicate locks). Nothing reads or writes its rows.
CREATE TABLE IF NOT EXISTS exchange_write_lock (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton));
