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

-- <create><symbol><account>: NULL on success, else why not, as a code of
-- server/errors.ts. (The tables have no foreign keys: this checks what they
-- would have.)
CREATE OR REPLACE FUNCTION add_shares(p_account text, p_sym text, p_shares numeric) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM FROM accounts WHERE id = p_account;
  IF NOT FOUND THEN RETURN 'unknown_account'; END IF;
  PERFORM FROM symbols WHERE sym = p_sym;
  IF NOT FOUND THEN RETURN 'unknown_symbol'; END IF;
  PERFORM credit_position(p_account, p_sym, p_shares);
  RETURN NULL;
END $$;

-- Dropped first because their result columns changed once; the per-write
-- functions of earlier versions are gone (apply_writes does it all).
DROP FUNCTION IF EXISTS place_order(text, text, numeric, numeric);
DROP FUNCTION IF EXISTS cancel_order(text, bigint);
DROP FUNCTION IF EXISTS apply_writes(text[], text[], text[], numeric[], numeric[], bigint[]);

-- A credit not yet written: cash (sym NULL) or shares of sym, owed to account_id.
DO $$
BEGIN
  IF to_regtype('credit_due') IS NULL THEN
    CREATE TYPE credit_due AS (account_id text, sym text, amount numeric);
  END IF;
END $$;

-- A batch of writes (orders and cancels, any symbols) in one transaction, in
-- arrival order: each sees the book and the balances exactly as the writes
-- before it left them, and all share one commit. One row per write, in order
-- (why not is a code of server/errors.ts; the server words it for the wire):
-- - <order>: order_id once opened, else rejection ('unknown_symbol',
--   'unknown_account', 'insufficient_funds', 'insufficient_shares');
--   fill_count, how many resting orders it traded with.
-- - <cancel>: outcome 'canceled', 'nothing_open' or 'unknown_order' (also for
--   another account's order, so ids cannot be probed); when canceled, the
--   shares and time, and the order's fills (final once canceled), oldest first.
--
-- The batch holds the exchange's write lock, and its cost is nearly all per SQL
-- statement, so each write runs as few as it can. An order: one UPDATE that
-- reserves its cash or shares or rejects it (first, so that an order that
-- cannot pay never walks the book under the lock), one probe of the book per
-- fill (and one more), one UPDATE per fill of the resting order, and one
-- INSERT of its own row, written once, already matched. A cancel: one UPDATE.
--
-- Settlement, in the fill loop and the cancel: what a fill or a cancel credits
-- (a seller's proceeds, a buyer's shares and refund, a cancel's refund) only
-- ever adds to a balance or a position, so it is not written at once but kept
-- as "due", one sum per account's cash and per account's shares of a symbol,
-- and written once per batch, with the executions, one statement per table.
-- A reservation takes its account's due credit along (so it sees exactly what
-- serial execution would), and nothing else reads balances or positions here.
--
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
  now_s       constant bigint := exchange_epoch_seconds();
  -- Symbols are never deleted: looked up once; a buy of a new one adds it.
  known_syms  text[] := ARRAY(SELECT sym FROM symbols WHERE sym = ANY (p_syms));

  -- The write at hand (w_: its names would clash with the tables' columns).
  w_account   text;
  w_sym       text;
  w_amount    numeric;
  w_limit     numeric;
  is_buy      boolean;

  -- Credits due: cash per account, and shares per account and symbol, found by
  -- a key of the account's length, the account and the symbol (so no two pairs
  -- share one). Two lists, not one: each lookup scans only its own kind, and
  -- with a thousand writes in a batch that was measurably faster.
  cash_accounts text[] := '{}';
  cash_due      numeric[] := '{}';
  shares_keys   text[] := '{}';
  shares_due    credit_due[] := '{}';
  shares_key    text;
  j             integer;
  -- What a reservation took of the account's due credit.
  taken         numeric;
  -- This write's credits, made due once the write is done.
  credits       credit_due[];
  credit        credit_due;
  -- Executions not yet written, in execution order (their ids come from the INSERT).
  unwritten   executions[] := '{}';

  -- Matching: the book is walked by keyset (last_price, last_id), so a long
  -- sweep stays linear; one fill's two sides.
  unfilled    numeric;
  last_price  numeric;
  last_id     bigint;
  resting     record;
  fill        numeric;
  fill_price  numeric;
  buy_id      bigint;
  buyer       text;
  buy_limit   numeric;
  sell_id     bigint;
  seller      text;
  canceled    record;
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
    order_id := NULL; rejection := NULL; fill_count := NULL; outcome := NULL;
    shares_canceled := NULL; time_canceled := NULL; fills := NULL;
    w_account := p_accounts[i];
    credits := '{}';

    IF p_kinds[i] = 'order' THEN
      w_sym := p_syms[i]; w_amount := p_amounts[i]; w_limit := p_limits[i];
      is_buy := w_amount > 0;
      fill_count := 0;
      <<place>>
      BEGIN
        -- SPEC: a buy of a symbol never created opens (the symbol exists from then
        -- on, in this transaction); a sell of it has no position to sell from.
        IF w_sym IS NULL OR (NOT w_sym = ANY (known_syms) AND NOT is_buy) THEN
          rejection := 'unknown_symbol';
          EXIT place;
        END IF;

        -- Reserve what the order may spend (a buy's cash at its limit, a sell's
        -- shares), counting the account's due credit, which it then takes along.
        IF is_buy THEN
          j := array_position(cash_accounts, w_account);
          taken := coalesce(cash_due[j], 0);
          UPDATE accounts SET balance = balance + taken - w_amount * w_limit
           WHERE id = w_account AND balance + taken >= w_amount * w_limit;
        ELSE
          j := array_position(shares_keys, length(w_account) || ':' || w_account || w_sym);
          taken := coalesce(shares_due[j].amount, 0);
          UPDATE positions SET shares = shares + taken + w_amount
           WHERE account_id = w_account AND sym = w_sym AND shares + taken >= - w_amount;
          IF NOT FOUND AND taken >= - w_amount THEN
            -- Enough shares are due but none written yet: the position is new.
            INSERT INTO positions (account_id, sym, shares) VALUES (w_account, w_sym, taken + w_amount);
          END IF;
        END IF;
        IF NOT FOUND THEN
          PERFORM FROM accounts WHERE id = w_account;
          rejection := CASE WHEN NOT FOUND THEN 'unknown_account'
                            WHEN is_buy THEN 'insufficient_funds' ELSE 'insufficient_shares' END;
          EXIT place;
        END IF;
        -- The due credit is in the balance or position now.
        IF j IS NOT NULL AND is_buy THEN
          cash_due[j] := 0;
        ELSIF j IS NOT NULL THEN
          shares_due[j].amount := 0;
        END IF;
        IF NOT w_sym = ANY (known_syms) THEN
          -- Only once the buy is affordable: a rejected order creates nothing.
          INSERT INTO symbols (sym) VALUES (w_sym) ON CONFLICT (sym) DO NOTHING;
          known_syms := known_syms || w_sym;
        END IF;
        order_id := nextval('order_ids');

        -- Match: best price first, then the earliest order; the resting order's
        -- limit is the price.
        unfilled := abs(w_amount);
        last_price := CASE WHEN is_buy THEN 0 ELSE 'Infinity'::numeric END;
        last_id := 0;
        WHILE unfilled > 0 LOOP
          IF is_buy THEN
            SELECT o.id, o.account_id, o.limit_price, o.open_shares INTO resting
              FROM orders o
             WHERE o.sym = w_sym AND o.amount < 0 AND o.open_shares > 0 AND o.limit_price <= w_limit
               AND (o.limit_price, o.id) > (last_price, last_id)
             ORDER BY o.limit_price ASC, o.id ASC
             LIMIT 1;
          ELSE
            SELECT o.id, o.account_id, o.limit_price, o.open_shares INTO resting
              FROM orders o
             WHERE o.sym = w_sym AND o.amount > 0 AND o.open_shares > 0 AND o.limit_price >= w_limit
               AND o.limit_price <= last_price AND (o.limit_price < last_price OR o.id > last_id)
             ORDER BY o.limit_price DESC, o.id ASC
             LIMIT 1;
          END IF;
          EXIT WHEN NOT FOUND;
          last_price := resting.limit_price;
          last_id := resting.id;
          fill := least(unfilled, resting.open_shares);
          fill_price := resting.limit_price;
          unfilled := unfilled - fill;
          fill_count := fill_count + 1;
          UPDATE orders SET open_shares = open_shares - fill WHERE id = resting.id;

          -- Settle the fill (SPEC, Matching 5): the seller is paid fill x price,
          -- the buyer gets the shares, and a buyer that reserved at a limit above
          -- the price gets the difference back (a resting buy's limit is the
          -- price: it gets nothing back).
          IF is_buy THEN
            buy_id := order_id; buyer := w_account; buy_limit := w_limit;
            sell_id := resting.id; seller := resting.account_id;
          ELSE
            buy_id := resting.id; buyer := resting.account_id; buy_limit := fill_price;
            sell_id := order_id; seller := w_account;
          END IF;
          unwritten := unwritten || ROW(NULL, buy_id, sell_id, fill, fill_price, now_s)::executions;
          credits := credits || ROW(seller, NULL, fill * fill_price)::credit_due || ROW(buyer, w_sym, fill)::credit_due;
          IF buy_limit > fill_price THEN
            credits := credits || ROW(buyer, NULL, fill * (buy_limit - fill_price))::credit_due;
          END IF;
        END LOOP;

        INSERT INTO orders (id, account_id, sym, amount, limit_price, open_shares)
        VALUES (order_id, w_account, w_sym, w_amount, w_limit, unfilled);
      END place;

    ELSE
      -- Only a row with open shares is canceled, so a refund happens exactly once.
      UPDATE orders
         SET canceled_shares = open_shares, canceled_at = now_s, open_shares = 0
       WHERE id = p_order_ids[i] AND account_id = w_account AND open_shares > 0
      RETURNING sym, amount, limit_price, canceled_shares INTO canceled;
      IF NOT FOUND THEN
        PERFORM FROM orders WHERE id = p_order_ids[i] AND account_id = w_account;
        outcome := CASE WHEN FOUND THEN 'nothing_open' ELSE 'unknown_order' END;
      ELSE
        outcome := 'canceled';
        shares_canceled := canceled.canceled_shares;
        time_canceled := now_s;
        -- Settle the cancel: a buy gets back what its open shares reserved, a sell the shares.
        credits := ARRAY[CASE WHEN canceled.amount > 0
                              THEN ROW(w_account, NULL, canceled.canceled_shares * canceled.limit_price)::credit_due
                              ELSE ROW(w_account, canceled.sym, canceled.canceled_shares)::credit_due END];
        -- Fills + open + canceled = amount: an order canceled whole has no fills to read.
        IF canceled.canceled_shares <> abs(canceled.amount) THEN
          -- Some of its fills may be this batch's, not yet written.
          IF cardinality(unwritten) > 0 THEN
            INSERT INTO executions (buy_order_id, sell_order_id, shares, price, executed_at)
            SELECT x.buy_order_id, x.sell_order_id, x.shares, x.price, x.executed_at
              FROM unnest(unwritten) WITH ORDINALITY AS x ORDER BY x.ordinality;
            unwritten := '{}';
          END IF;
          SELECT jsonb_agg(jsonb_build_array(f.shares::text, f.price::text, f.executed_at::text) ORDER BY f.execution_id)
            INTO fills FROM order_fills f WHERE f.order_id = p_order_ids[i];
        END IF;
      END IF;
    END IF;

    -- This write's credits become due.
    FOREACH credit IN ARRAY credits LOOP
      IF credit.sym IS NULL THEN
        j := array_position(cash_accounts, credit.account_id);
        IF j IS NULL THEN
          cash_accounts := cash_accounts || credit.account_id;
          cash_due := cash_due || credit.amount;
        ELSE
          cash_due[j] := cash_due[j] + credit.amount;
        END IF;
      ELSE
        shares_key := length(credit.account_id) || ':' || credit.account_id || credit.sym;
        j := array_position(shares_keys, shares_key);
        IF j IS NULL THEN
          shares_keys := shares_keys || shares_key;
          shares_due := shares_due || credit;
        ELSE
          shares_due[j].amount := shares_due[j].amount + credit.amount;
        END IF;
      END IF;
    END LOOP;
    RETURN NEXT;
  END LOOP;

  -- Everything still unwritten, one statement per table.
  IF cardinality(unwritten) > 0 THEN
    INSERT INTO executions (buy_order_id, sell_order_id, shares, price, executed_at)
    SELECT x.buy_order_id, x.sell_order_id, x.shares, x.price, x.executed_at
      FROM unnest(unwritten) WITH ORDINALITY AS x ORDER BY x.ordinality;
  END IF;
  IF cardinality(cash_accounts) > 0 THEN
    UPDATE accounts a SET balance = a.balance + d.amount
      FROM unnest(cash_accounts, cash_due) AS d(id, amount) WHERE a.id = d.id AND d.amount > 0;
  END IF;
  IF cardinality(shares_keys) > 0 THEN
    INSERT INTO positions AS held (account_id, sym, shares)
    SELECT d.account_id, d.sym, d.amount FROM unnest(shares_due) AS d WHERE d.amount > 0
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
