-- The matching rules of SPEC.md, in one place. Each function runs inside the
-- caller's SERIALIZABLE transaction, so an order is reserved, opened, matched
-- and settled atomically in one round trip, or not at all.
--
-- Every write batch holds the exchange's write lock while apply_writes runs, so
-- its time per order bounds the throughput of the whole exchange: it is written
-- to run as few statements per order as it can (see apply_writes).

CREATE OR REPLACE FUNCTION exchange_epoch_seconds() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT floor(extract(epoch FROM now()))::bigint $$;

CREATE OR REPLACE FUNCTION credit_position(p_account text, p_sym text, p_shares numeric) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO positions (account_id, sym, shares) VALUES (p_account, p_sym, p_shares)
  ON CONFLICT (account_id, sym) DO UPDATE SET shares = positions.shares + EXCLUDED.shares
$$;

-- <create><symbol><account>: NULL on success, else the reason. (The tables
-- have no foreign keys: this checks what they would have.)
CREATE OR REPLACE FUNCTION add_shares(p_account text, p_sym text, p_shares numeric) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM FROM accounts WHERE id = p_account;
  IF NOT FOUND THEN RETURN 'unknown account'; END IF;
  PERFORM FROM symbols WHERE sym = p_sym;
  IF NOT FOUND THEN RETURN 'unknown symbol'; END IF;
  PERFORM credit_position(p_account, p_sym, p_shares);
  RETURN NULL;
END $$;

-- Dropped first because their result columns changed once; the per-write
-- functions of earlier versions are gone (apply_writes does it all).
DROP FUNCTION IF EXISTS place_order(text, text, numeric, numeric);
DROP FUNCTION IF EXISTS cancel_order(text, bigint);
DROP FUNCTION IF EXISTS apply_writes(text[], text[], text[], numeric[], numeric[], bigint[]);

-- A batch of writes (orders and cancels, any symbols) in one transaction, in
-- arrival order: each sees the book and the balances as the previous one left
-- them, and all share one commit. One row per write, in order:
-- - <order>: opens the order (order_id) or says why not (rejection), then
--   matches it (fill_count fills).
-- - <cancel>: outcome is 'canceled', 'nothing open' or 'unknown order' (also
--   for another account's order, so ids cannot be probed); when canceled, the
--   shares and time, and the order's fills (final once canceled), oldest first.
--   Refunds happen exactly once because only a row with open shares is canceled.
--
-- Its cost is nearly all per SQL statement, so a write runs as few as it can.
-- An order's one UPDATE reserves its cash or shares or rejects it (first, so a
-- rejected order never walks the book while the write lock is held), then it
-- reads the book, one INSERT writes the order row (once, already matched), and
-- one UPDATE per fill settles the resting order. What
-- the fills and cancels credit (a seller's proceeds, a buyer's shares, a
-- refund) only ever adds to a balance or position, so it is kept here as "due"
-- and written once per batch: a later reservation of the same account takes
-- its due credit along (so it sees exactly what serial execution would), and
-- the rest, and the executions, are written at the end, one statement each.
-- Planner settings: every lookup is by key, so sequential scans, hash and merge
-- joins are off, and each statement keeps one generic plan per session (why:
-- docs/performance.md, "Why the matcher's plans are pinned"; checked by
-- tests/integration/plan-stability).
CREATE FUNCTION apply_writes(
  p_kinds text[], p_accounts text[], p_syms text[], p_amounts numeric[], p_limits numeric[], p_order_ids bigint[])
RETURNS TABLE (order_id bigint, rejection text, fill_count integer, outcome text, shares_canceled numeric, time_canceled bigint, fills jsonb)
LANGUAGE plpgsql SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
  SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  now_s      constant bigint := exchange_epoch_seconds();
  -- Symbols are never deleted: look them up once; a buy of a new one adds it.
  known_syms text[] := ARRAY(SELECT sym FROM symbols WHERE sym = ANY (p_syms));
  p_account  text;
  p_sym      text;
  p_amount   numeric;
  p_limit    numeric;
  is_buy     boolean;
  unfilled   numeric;
  resting    record;
  fill       numeric;
  -- Keyset position in the book: before the first sell, or above the highest buy.
  last_price numeric;
  last_id    bigint;
  -- What the incoming order's own account gains from its fills: cash (a buy's
  -- refund or a sell's proceeds) and, for a buy, shares.
  own_cash   numeric;
  own_shares numeric;
  -- The fills found, in matching order: resting order, its account, price, shares.
  n_fills    integer;
  f_ids      bigint[];
  f_accounts text[];
  f_prices   numeric[];
  f_shares   numeric[];
  canceled   record;
  -- This write's credits: account, symbol (NULL for cash), amount.
  c_accounts text[];
  c_syms     text[];
  c_amounts  numeric[];
  -- Credits due: cash per account, and shares per account and symbol (named by
  -- shares_key: the account's length, the account and the symbol, so that no
  -- two pairs share a name).
  cash_accounts   text[] := '{}';
  cash_due        numeric[] := '{}';
  shares_keys     text[] := '{}';
  shares_accounts text[] := '{}';
  shares_syms     text[] := '{}';
  shares_due      numeric[] := '{}';
  shares_key text;
  due        numeric;
  j          integer;
  -- Executions not yet written, in execution order.
  x_buys     bigint[] := '{}';
  x_sells    bigint[] := '{}';
  x_shares   numeric[] := '{}';
  x_prices   numeric[] := '{}';
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
    order_id := NULL; rejection := NULL; fill_count := NULL; outcome := NULL;
    shares_canceled := NULL; time_canceled := NULL; fills := NULL;
    p_account := p_accounts[i];
    c_accounts := '{}'; c_syms := '{}'; c_amounts := '{}';
    IF p_kinds[i] = 'order' THEN
      p_sym := p_syms[i]; p_amount := p_amounts[i]; p_limit := p_limits[i];
      is_buy := p_amount > 0;
      fill_count := 0;
      <<place>>
      BEGIN
        -- SPEC: a buy of a symbol never created opens (the symbol exists from then
        -- on, in this transaction); a sell of it has no position to sell from.
        IF p_sym IS NULL THEN rejection := 'unknown symbol'; EXIT place; END IF;
        IF NOT p_sym = ANY (known_syms) AND NOT is_buy THEN rejection := 'unknown symbol'; EXIT place; END IF;

        -- Reserve what the order may spend, or reject it, before anything else: a
        -- buy's cash at its limit, a sell's shares; either way with the account's
        -- due credit, which is then no longer due. (Rejected first, an order that
        -- cannot pay never walks the book while the batch holds the write lock.)
        IF is_buy THEN
          j := array_position(cash_accounts, p_account);
          due := coalesce(cash_due[j], 0);
          UPDATE accounts SET balance = balance + due - p_amount * p_limit
           WHERE id = p_account AND balance + due >= p_amount * p_limit;
        ELSE
          j := array_position(shares_keys, length(p_account) || ':' || p_account || p_sym);
          due := coalesce(shares_due[j], 0);
          UPDATE positions SET shares = shares + due + p_amount
           WHERE account_id = p_account AND sym = p_sym AND shares + due >= - p_amount;
          IF NOT FOUND AND due >= - p_amount THEN
            -- Enough shares are due but none written yet: the position is new.
            INSERT INTO positions (account_id, sym, shares) VALUES (p_account, p_sym, due + p_amount);
          END IF;
        END IF;
        IF NOT FOUND THEN
          PERFORM FROM accounts WHERE id = p_account;
          rejection := CASE WHEN NOT FOUND THEN 'unknown account'
                            WHEN is_buy THEN 'insufficient funds' ELSE 'insufficient shares' END;
          EXIT place;
        END IF;
        IF j IS NOT NULL THEN
          IF is_buy THEN cash_due[j] := 0; ELSE shares_due[j] := 0; END IF;
        END IF;
        IF NOT p_sym = ANY (known_syms) THEN
          -- Only once the buy is affordable: a rejected order creates nothing.
          INSERT INTO symbols (sym) VALUES (p_sym) ON CONFLICT (sym) DO NOTHING;
          known_syms := known_syms || p_sym;
        END IF;

        -- Find the fills (reads only): best price first, then earliest
        -- id; the resting order's limit is the price. Each probe resumes after
        -- the last order taken (keyset), so a long sweep stays linear.
        unfilled := abs(p_amount);
        last_price := CASE WHEN is_buy THEN 0 ELSE 'Infinity'::numeric END;
        last_id := 0;
        own_cash := 0;
        own_shares := 0;
        n_fills := 0;
        WHILE unfilled > 0 LOOP
          IF is_buy THEN
            SELECT o.id, o.account_id, o.limit_price, o.open_shares INTO resting
              FROM orders o
             WHERE o.sym = p_sym AND o.amount < 0 AND o.open_shares > 0 AND o.limit_price <= p_limit
               AND (o.limit_price, o.id) > (last_price, last_id)
             ORDER BY o.limit_price ASC, o.id ASC
             LIMIT 1;
          ELSE
            SELECT o.id, o.account_id, o.limit_price, o.open_shares INTO resting
              FROM orders o
             WHERE o.sym = p_sym AND o.amount > 0 AND o.open_shares > 0 AND o.limit_price >= p_limit
               AND o.limit_price <= last_price AND (o.limit_price < last_price OR o.id > last_id)
             ORDER BY o.limit_price DESC, o.id ASC
             LIMIT 1;
          END IF;
          EXIT WHEN NOT FOUND;
          last_price := resting.limit_price;
          last_id := resting.id;
          fill := least(unfilled, resting.open_shares);
          unfilled := unfilled - fill;
          n_fills := n_fills + 1;
          f_ids[n_fills] := resting.id;
          f_accounts[n_fills] := resting.account_id;
          f_prices[n_fills] := resting.limit_price;
          f_shares[n_fills] := fill;
          IF is_buy THEN
            -- Reserved at its limit, the buy pays the resting sell's: the difference comes back.
            own_cash := own_cash + fill * (p_limit - resting.limit_price);
            own_shares := own_shares + fill;
          ELSE
            own_cash := own_cash + fill * resting.limit_price;
          END IF;
        END LOOP;

        -- The order row is written once, already matched.
        order_id := nextval('order_ids');
        fill_count := n_fills;
        INSERT INTO orders (id, account_id, sym, amount, limit_price, open_shares)
        VALUES (order_id, p_account, p_sym, p_amount, p_limit, unfilled);

        FOR k IN 1 .. n_fills LOOP
          UPDATE orders SET open_shares = open_shares - f_shares[k] WHERE id = f_ids[k];
          x_buys := x_buys || CASE WHEN is_buy THEN order_id ELSE f_ids[k] END;
          x_sells := x_sells || CASE WHEN is_buy THEN f_ids[k] ELSE order_id END;
          x_shares := x_shares || f_shares[k];
          x_prices := x_prices || f_prices[k];
          -- A resting sell is paid; a resting buy gets the shares (it reserved
          -- exactly price * shares, so it gets no refund).
          c_accounts := c_accounts || f_accounts[k];
          c_syms := c_syms || CASE WHEN is_buy THEN NULL ELSE p_sym END;
          c_amounts := c_amounts || CASE WHEN is_buy THEN f_shares[k] * f_prices[k] ELSE f_shares[k] END;
        END LOOP;
        -- A sell's proceeds; a buy's shares and its refund (reserved at its limit,
        -- it paid the resting sells' lower limits).
        IF n_fills > 0 THEN
          c_accounts := c_accounts || p_account;
          c_syms := c_syms || CASE WHEN is_buy THEN p_sym ELSE NULL END;
          c_amounts := c_amounts || CASE WHEN is_buy THEN own_shares ELSE own_cash END;
          IF is_buy AND own_cash > 0 THEN
            c_accounts := c_accounts || p_account;
            c_syms := c_syms || NULL::text;
            c_amounts := c_amounts || own_cash;
          END IF;
        END IF;
      END place;
    ELSE
      UPDATE orders
         SET canceled_shares = open_shares, canceled_at = now_s, open_shares = 0
       WHERE id = p_order_ids[i] AND account_id = p_account AND open_shares > 0
      RETURNING sym, amount, limit_price, canceled_shares INTO canceled;
      IF NOT FOUND THEN
        PERFORM FROM orders WHERE id = p_order_ids[i] AND account_id = p_account;
        outcome := CASE WHEN FOUND THEN 'nothing open' ELSE 'unknown order' END;
      ELSE
        outcome := 'canceled';
        shares_canceled := canceled.canceled_shares;
        time_canceled := now_s;
        -- A buy gets back its open shares' reservation, a sell its open shares.
        c_accounts := ARRAY[p_account];
        c_syms := ARRAY[CASE WHEN canceled.amount > 0 THEN NULL ELSE canceled.sym END];
        c_amounts := ARRAY[CASE WHEN canceled.amount > 0 THEN canceled.canceled_shares * canceled.limit_price
                                ELSE canceled.canceled_shares END];
        -- Fills + open + canceled = amount: an order canceled whole has no fills.
        IF canceled.canceled_shares <> abs(canceled.amount) THEN
          IF cardinality(x_buys) > 0 THEN
            INSERT INTO executions (buy_order_id, sell_order_id, shares, price, executed_at)
            SELECT x.b, x.s, x.shares, x.price, now_s
              FROM unnest(x_buys, x_sells, x_shares, x_prices) WITH ORDINALITY AS x(b, s, shares, price, n) ORDER BY x.n;
            x_buys := '{}'; x_sells := '{}'; x_shares := '{}'; x_prices := '{}';
          END IF;
          SELECT jsonb_agg(jsonb_build_array(f.shares::text, f.price::text, f.executed_at::text) ORDER BY f.execution_id)
            INTO fills FROM order_fills f WHERE f.order_id = p_order_ids[i];
        END IF;
      END IF;
    END IF;

    -- This write's credits become due.
    FOR k IN 1 .. cardinality(c_accounts) LOOP
      IF c_syms[k] IS NULL THEN
        j := array_position(cash_accounts, c_accounts[k]);
        IF j IS NULL THEN
          cash_accounts := cash_accounts || c_accounts[k];
          cash_due := cash_due || c_amounts[k];
        ELSE
          cash_due[j] := cash_due[j] + c_amounts[k];
        END IF;
      ELSE
        shares_key := length(c_accounts[k]) || ':' || c_accounts[k] || c_syms[k];
        j := array_position(shares_keys, shares_key);
        IF j IS NULL THEN
          shares_keys := shares_keys || shares_key;
          shares_accounts := shares_accounts || c_accounts[k];
          shares_syms := shares_syms || c_syms[k];
          shares_due := shares_due || c_amounts[k];
        ELSE
          shares_due[j] := shares_due[j] + c_amounts[k];
        END IF;
      END IF;
    END LOOP;
    RETURN NEXT;
  END LOOP;

  -- Everything still due, once per table.
  IF cardinality(x_buys) > 0 THEN
    INSERT INTO executions (buy_order_id, sell_order_id, shares, price, executed_at)
    SELECT x.b, x.s, x.shares, x.price, now_s
      FROM unnest(x_buys, x_sells, x_shares, x_prices) WITH ORDINALITY AS x(b, s, shares, price, n) ORDER BY x.n;
  END IF;
  IF cardinality(cash_accounts) > 0 THEN
    UPDATE accounts a SET balance = a.balance + d.amount
      FROM unnest(cash_accounts, cash_due) AS d(id, amount) WHERE a.id = d.id AND d.amount > 0;
  END IF;
  IF cardinality(shares_keys) > 0 THEN
    INSERT INTO positions AS held (account_id, sym, shares)
    SELECT d.id, d.sym, d.amount FROM unnest(shares_accounts, shares_syms, shares_due) AS d(id, sym, amount) WHERE d.amount > 0
    ON CONFLICT (account_id, sym) DO UPDATE SET shares = held.shares + EXCLUDED.shares;
  END IF;

  -- Commit without waiting for the WAL flush only while another writer waits for
  -- the write lock: then the flush would hold up the whole exchange, and the
  -- replies wait for it outside the lock instead (server/store/durability.ts).
  -- Alone, a synchronous commit costs one round trip less than a separate flush.
  IF EXISTS (SELECT FROM pg_locks
              WHERE locktype = 'relation' AND relation = 'exchange_write_lock'::regclass AND NOT granted) THEN
    PERFORM set_config('synchronous_commit', 'off', true);
  END IF;
END $$;

-- Order-status lookups, many in one call: for each (account, order) pair, in
-- the given order (n = its 1-based position), the order's state and its fills,
-- oldest first; nothing for an unknown id or another account's order. Its plan
-- is cached for the session like apply_writes', with the same guards: left to
-- PostgreSQL, the statement was planned afresh at every call on a busy database
-- (10% of PostgreSQL's CPU), and a generic plan made while the tables were empty
-- scanned all of orders and executions on every later call.
DROP FUNCTION IF EXISTS order_statuses(text[], bigint[]);
CREATE FUNCTION order_statuses(p_accounts text[], p_order_ids bigint[])
RETURNS TABLE (n integer, open_shares numeric, canceled_shares numeric, canceled_at bigint,
               shares numeric, price numeric, executed_at bigint)
LANGUAGE plpgsql STABLE SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
  SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN QUERY
  SELECT q.n::integer, o.open_shares, o.canceled_shares, o.canceled_at, f.shares, f.price, f.executed_at
    FROM unnest(p_accounts, p_order_ids) WITH ORDINALITY AS q(account_id, order_id, n)
    JOIN orders o ON o.id = q.order_id AND o.account_id = q.account_id
    LEFT JOIN order_fills f ON f.order_id = o.id
   ORDER BY q.n, f.execution_id;
END $$;
