-- The matching rules of SPEC.md, in one place. Each function runs inside the
-- caller's SERIALIZABLE transaction, so an order is reserved, opened, matched
-- and settled atomically in one round trip, or not at all.

CREATE OR REPLACE FUNCTION exchange_epoch_seconds() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT floor(extract(epoch FROM now()))::bigint $$;

CREATE OR REPLACE FUNCTION credit_position(p_account text, p_sym text, p_shares numeric) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO positions (account_id, sym, shares) VALUES (p_account, p_sym, p_shares)
  ON CONFLICT (account_id, sym) DO UPDATE SET shares = positions.shares + EXCLUDED.shares
$$;

-- <create><symbol><account>: NULL on success, else the reason.
CREATE OR REPLACE FUNCTION add_shares(p_account text, p_sym text, p_shares numeric) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM accounts WHERE id = p_account;
  IF NOT FOUND THEN RETURN 'unknown account'; END IF;
  PERFORM credit_position(p_account, p_sym, p_shares);
  RETURN NULL;
END $$;

-- <order>: opens the order (order_id) or says why not (rejection), then matches
-- it (fill_count fills). Dropped first because its result columns changed once.
DROP FUNCTION IF EXISTS apply_writes(text[], text[], text[], numeric[], numeric[], bigint[]);
DROP FUNCTION IF EXISTS place_order(text, text, numeric, numeric);
CREATE FUNCTION place_order(
  p_account text, p_sym text, p_amount numeric, p_limit numeric,
  OUT order_id bigint, OUT rejection text, OUT fill_count integer)
LANGUAGE plpgsql AS $$
DECLARE
  is_buy  constant boolean := p_amount > 0;
  now_s   constant bigint := exchange_epoch_seconds();
  unfilled numeric := abs(p_amount);
  resting record;
  fill    numeric;
  -- Keyset position in the book: before the first sell, or above the highest buy.
  last_price numeric := CASE WHEN p_amount > 0 THEN 0 ELSE 'Infinity'::numeric END;
  last_id bigint := 0;
  -- What the incoming order's own account gains from its fills: cash (a buy's
  -- refund or a sell's proceeds) and, for a buy, shares.
  own_cash numeric := 0;
  own_shares numeric := 0;
BEGIN
  fill_count := 0;
  PERFORM 1 FROM symbols WHERE sym = p_sym;
  IF NOT FOUND THEN rejection := 'unknown symbol'; RETURN; END IF;

  -- Reserve what the order may spend: a buy's cash at its limit, a sell's shares.
  IF is_buy THEN
    UPDATE accounts SET balance = balance - p_amount * p_limit
     WHERE id = p_account AND balance >= p_amount * p_limit;
    IF NOT FOUND THEN
      PERFORM 1 FROM accounts WHERE id = p_account;
      rejection := CASE WHEN FOUND THEN 'insufficient funds' ELSE 'unknown account' END;
      RETURN;
    END IF;
  ELSE
    UPDATE positions SET shares = shares - unfilled
     WHERE account_id = p_account AND sym = p_sym AND shares >= unfilled;
    IF NOT FOUND THEN
      PERFORM 1 FROM accounts WHERE id = p_account;
      rejection := CASE WHEN FOUND THEN 'insufficient shares' ELSE 'unknown account' END;
      RETURN;
    END IF;
  END IF;

  INSERT INTO orders (account_id, sym, amount, limit_price, open_shares)
  VALUES (p_account, p_sym, p_amount, p_limit, unfilled)
  RETURNING id INTO order_id;

  -- Best price first, then earliest id; the resting order's limit is the price.
  -- Each step resumes after the last order filled (keyset), so sweeping many
  -- resting orders stays linear instead of rescanning the filled ones.
  WHILE unfilled > 0 LOOP
    IF is_buy THEN
      SELECT o.id, o.account_id, o.limit_price, o.open_shares INTO resting
        FROM orders o
       WHERE o.sym = p_sym AND o.amount < 0 AND o.open_shares > 0 AND o.limit_price <= p_limit
         AND (o.limit_price, o.id) > (last_price, last_id)
       ORDER BY o.limit_price ASC, o.id ASC
       LIMIT 1 FOR UPDATE;
    ELSE
      SELECT o.id, o.account_id, o.limit_price, o.open_shares INTO resting
        FROM orders o
       WHERE o.sym = p_sym AND o.amount > 0 AND o.open_shares > 0 AND o.limit_price >= p_limit
         AND o.limit_price <= last_price AND (o.limit_price < last_price OR o.id > last_id)
       ORDER BY o.limit_price DESC, o.id ASC
       LIMIT 1 FOR UPDATE;
    END IF;
    EXIT WHEN NOT FOUND;
    last_price := resting.limit_price;
    last_id := resting.id;

    fill := least(unfilled, resting.open_shares);
    unfilled := unfilled - fill;
    fill_count := fill_count + 1;
    UPDATE orders SET open_shares = open_shares - fill WHERE id = resting.id;

    IF is_buy THEN
      INSERT INTO executions (buy_order_id, sell_order_id, shares, price, executed_at)
      VALUES (order_id, resting.id, fill, resting.limit_price, now_s);
      -- The seller is paid; the buyer's shares and refund are credited once, after the loop.
      UPDATE accounts SET balance = balance + fill * resting.limit_price WHERE id = resting.account_id;
      own_cash := own_cash + fill * (p_limit - resting.limit_price);
      own_shares := own_shares + fill;
    ELSE
      INSERT INTO executions (buy_order_id, sell_order_id, shares, price, executed_at)
      VALUES (resting.id, order_id, fill, resting.limit_price, now_s);
      -- The resting buy reserved exactly price * shares, so it gets no refund.
      own_cash := own_cash + fill * resting.limit_price;
      PERFORM credit_position(resting.account_id, p_sym, fill);
    END IF;
  END LOOP;

  -- One update of the incoming account however many fills (repeated updates of
  -- one row in a transaction get slower with each version).
  IF own_cash > 0 THEN
    UPDATE accounts SET balance = balance + own_cash WHERE id = p_account;
  END IF;
  IF own_shares > 0 THEN
    PERFORM credit_position(p_account, p_sym, own_shares);
  END IF;

  IF unfilled <> abs(p_amount) THEN
    UPDATE orders SET open_shares = unfilled WHERE id = order_id;
  END IF;
END $$;

-- <cancel>: outcome is 'canceled', 'nothing open' or 'unknown order' (also for
-- another account's order, so ids cannot be probed). Refunds happen exactly once
-- because only a row with open shares can be canceled.
CREATE OR REPLACE FUNCTION cancel_order(
  p_account text, p_order_id bigint,
  OUT outcome text, OUT shares_canceled numeric, OUT time_canceled bigint)
LANGUAGE plpgsql AS $$
DECLARE
  now_s constant bigint := exchange_epoch_seconds();
  canceled record;
BEGIN
  UPDATE orders
     SET canceled_shares = open_shares, canceled_at = now_s, open_shares = 0
   WHERE id = p_order_id AND account_id = p_account AND open_shares > 0
  RETURNING sym, amount, limit_price, canceled_shares INTO canceled;
  IF NOT FOUND THEN
    PERFORM 1 FROM orders WHERE id = p_order_id AND account_id = p_account;
    outcome := CASE WHEN FOUND THEN 'nothing open' ELSE 'unknown order' END;
    RETURN;
  END IF;

  IF canceled.amount > 0 THEN
    UPDATE accounts SET balance = balance + canceled.canceled_shares * canceled.limit_price WHERE id = p_account;
  ELSE
    PERFORM credit_position(p_account, canceled.sym, canceled.canceled_shares);
  END IF;
  outcome := 'canceled';
  shares_canceled := canceled.canceled_shares;
  time_canceled := now_s;
END $$;

-- A batch of writes (orders and cancels, any symbols) in one transaction, in
-- arrival order: each sees the book as the previous one left it, and all share
-- one commit. For a cancel, also its fills (final once canceled), oldest first.
CREATE FUNCTION apply_writes(
  p_kinds text[], p_accounts text[], p_syms text[], p_amounts numeric[], p_limits numeric[], p_order_ids bigint[])
RETURNS TABLE (order_id bigint, rejection text, fill_count integer, outcome text, shares_canceled numeric, time_canceled bigint, fills jsonb)
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
    order_id := NULL; rejection := NULL; fill_count := NULL; outcome := NULL;
    shares_canceled := NULL; time_canceled := NULL; fills := NULL;
    IF p_kinds[i] = 'order' THEN
      SELECT placed.order_id, placed.rejection, placed.fill_count INTO order_id, rejection, fill_count
        FROM place_order(p_accounts[i], p_syms[i], p_amounts[i], p_limits[i]) AS placed;
    ELSE
      SELECT c.outcome, c.shares_canceled, c.time_canceled INTO outcome, shares_canceled, time_canceled
        FROM cancel_order(p_accounts[i], p_order_ids[i]) AS c;
      IF outcome = 'canceled' THEN
        SELECT jsonb_agg(jsonb_build_array(f.shares::text, f.price::text, f.executed_at::text) ORDER BY f.execution_id)
          INTO fills FROM order_fills f WHERE f.order_id = p_order_ids[i];
      END IF;
    END IF;
    RETURN NEXT;
  END LOOP;
END $$;
