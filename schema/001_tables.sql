-- Exchange tables. Applied at every start: every statement is idempotent.
-- Money and shares are unconstrained NUMERIC: exact decimals, never floats.

-- One row naming this database instance, so caches can key on it (a reset
-- database gets a new id and never meets old cache entries).
CREATE TABLE IF NOT EXISTS exchange_instance (
  singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  instance_id uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO exchange_instance DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS accounts (
  id      text PRIMARY KEY,
  balance numeric NOT NULL CHECK (balance >= 0)
);

CREATE TABLE IF NOT EXISTS symbols (
  sym text PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS positions (
  account_id text NOT NULL REFERENCES accounts (id),
  sym        text NOT NULL REFERENCES symbols (sym),
  shares     numeric NOT NULL CHECK (shares >= 0),
  PRIMARY KEY (account_id, sym)
);

-- Order ids come from this sequence: positive, increasing in arrival order,
-- and the id is the time priority, so updating a row never changes its place.
CREATE SEQUENCE IF NOT EXISTS order_ids AS bigint START 1;

CREATE TABLE IF NOT EXISTS orders (
  id              bigint PRIMARY KEY DEFAULT nextval('order_ids'),
  account_id      text NOT NULL REFERENCES accounts (id),
  sym             text NOT NULL REFERENCES symbols (sym),
  -- Signed as sent: positive buys, negative sells.
  amount          numeric NOT NULL CHECK (amount <> 0),
  limit_price     numeric NOT NULL CHECK (limit_price > 0),
  open_shares     numeric NOT NULL CHECK (open_shares >= 0),
  canceled_shares numeric CHECK (canceled_shares > 0),
  canceled_at     bigint,
  CHECK (open_shares <= abs(amount)),
  CHECK ((canceled_shares IS NULL) = (canceled_at IS NULL)),
  CHECK (canceled_shares IS NULL OR open_shares = 0)
);
ALTER SEQUENCE order_ids OWNED BY orders.id;

-- The two sides of each book, in matching order; only open orders are indexed.
CREATE INDEX IF NOT EXISTS orders_open_buys ON orders (sym, limit_price DESC, id)
  WHERE open_shares > 0 AND amount > 0;
CREATE INDEX IF NOT EXISTS orders_open_sells ON orders (sym, limit_price ASC, id)
  WHERE open_shares > 0 AND amount < 0;
CREATE INDEX IF NOT EXISTS orders_by_account ON orders (account_id);

CREATE TABLE IF NOT EXISTS executions (
  id            bigserial PRIMARY KEY,
  buy_order_id  bigint NOT NULL REFERENCES orders (id),
  sell_order_id bigint NOT NULL REFERENCES orders (id),
  shares        numeric NOT NULL CHECK (shares > 0),
  price         numeric NOT NULL CHECK (price > 0),
  executed_at   bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_buy ON executions (buy_order_id, id);
CREATE INDEX IF NOT EXISTS executions_by_sell ON executions (sell_order_id, id);

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
