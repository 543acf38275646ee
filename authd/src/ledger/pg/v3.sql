-- futu-authd's limit ledger on PostgreSQL, schema version 3: the ledger follows the orders
-- of keys with max_open_orders, max_position_value or duplicate_window_ms, as the
-- in-memory ledger does (futu_auth_rules::ledger): their open orders, their positions per
-- symbol, the orders of the duplicate window, and what became of each order (order
-- events), shared by every host on the database.
--
-- Everything a key follows is changed only under its row in futu_ledger.keys, locked
-- first (FOR UPDATE), as charge, cancel, release and cancel_release lock it: a key's
-- checks and its orders' events are serialized across hosts.

-- Orders open now, per key: kept in step with futu_ledger.orders.
ALTER TABLE futu_ledger.keys ADD COLUMN open_count bigint NOT NULL DEFAULT 0;

-- One row an order followed (its key has max_open_orders or max_position_value), from its
-- charge until a day after it finished. Open orders are never pruned.
CREATE TABLE futu_ledger.orders (
    ticket       bigint PRIMARY KEY,
    key_id       text NOT NULL,
    symbol       text NOT NULL,
    -- Whether it adds to a long position (BUY, BUY_BACK) or a short one (SELL, SELL_SHORT).
    buys         boolean NOT NULL,
    -- The quantity and the limit price (NULL: a market order), bit for bit as the daemon
    -- read them.
    qty          float8 NOT NULL,
    price        float8,
    acc_id       numeric,
    at           timestamptz NOT NULL,
    -- The quantity filled so far (the last fill event's) and its value.
    filled_qty   float8 NOT NULL DEFAULT 0,
    filled_value numeric NOT NULL DEFAULT 0,
    -- What is still open, by value (the rest at the limit price), counted in its position.
    open_value   numeric NOT NULL,
    -- The broker took it.
    accepted     boolean NOT NULL DEFAULT false,
    -- When it finished (NULL while open) and how: 'F' filled, 'C' cancelled, 'R' rejected,
    -- 'L' released.
    finished_at  timestamptz,
    finished_how "char"
);
CREATE INDEX orders_finished_at ON futu_ledger.orders (finished_at) WHERE finished_at IS NOT NULL;

-- Per key and symbol, the value filled and the value open in each direction.
CREATE TABLE futu_ledger.positions (
    key_id     text NOT NULL,
    symbol     text NOT NULL,
    -- Value of filled buys, of filled sells.
    bought     numeric NOT NULL DEFAULT 0,
    sold       numeric NOT NULL DEFAULT 0,
    -- Value still open in orders that buy, that sell.
    open_buys  numeric NOT NULL DEFAULT 0,
    open_sells numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, symbol)
);

-- For duplicate_window_ms: per key, each order's fingerprint (its account, direction,
-- quantity and price bits and symbol, as text) and when it was last allowed, by which
-- ticket. Kept an hour, the longest window.
CREATE TABLE futu_ledger.recent_orders (
    key_id      text NOT NULL,
    fingerprint text NOT NULL,
    at          timestamptz NOT NULL,
    ticket      bigint NOT NULL,
    PRIMARY KEY (key_id, fingerprint)
);
CREATE INDEX recent_orders_at ON futu_ledger.recent_orders (at);
CREATE INDEX recent_orders_ticket ON futu_ledger.recent_orders (ticket);

-- The value of an order, qty × price, as the daemon's Money::order_value works it out:
-- each float as the shortest decimal that reads back to it, multiplied exactly, rounded up
-- to the next 1e-8; NULL above the largest amount (1e20).
CREATE FUNCTION futu_ledger.order_value(p_qty float8, p_price float8) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE SET extra_float_digits = 1 AS $fn$
DECLARE
    v numeric;
BEGIN
    IF p_qty IS NULL OR p_price IS NULL OR p_qty < 0 OR p_price < 0 THEN
        RETURN NULL;
    END IF;
    v := ceil(p_qty::text::numeric * p_price::text::numeric * 100000000);
    RETURN CASE WHEN v <= 10000000000000000000000000000 THEN v END;
END
$fn$;

-- Takes an open order out of the open ones, and its open value out of its position.
-- The caller holds the key's row.
CREATE FUNCTION futu_ledger.close_order(p_ticket bigint, p_at timestamptz, p_how "char")
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    o futu_ledger.orders;
BEGIN
    UPDATE futu_ledger.orders SET finished_at = p_at, finished_how = p_how
     WHERE ticket = p_ticket AND finished_at IS NULL
    RETURNING * INTO o;
    IF FOUND THEN
        UPDATE futu_ledger.positions
           SET open_buys = CASE WHEN o.buys THEN greatest(0, open_buys - o.open_value) ELSE open_buys END,
               open_sells = CASE WHEN o.buys THEN open_sells ELSE greatest(0, open_sells - o.open_value) END
         WHERE key_id = o.key_id AND symbol = o.symbol;
        UPDATE futu_ledger.keys SET open_count = greatest(0, open_count - 1) WHERE key_id = o.key_id;
    END IF;
END
$fn$;

-- Puts an order a release or an event finished back among the open ones (their audit
-- record could not be written). The caller holds the key's row.
CREATE FUNCTION futu_ledger.reopen_order(p_ticket bigint)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    o futu_ledger.orders;
BEGIN
    UPDATE futu_ledger.orders SET finished_at = NULL, finished_how = NULL
     WHERE ticket = p_ticket AND finished_at IS NOT NULL
    RETURNING * INTO o;
    IF FOUND THEN
        UPDATE futu_ledger.positions
           SET open_buys = CASE WHEN o.buys THEN open_buys + o.open_value ELSE open_buys END,
               open_sells = CASE WHEN o.buys THEN open_sells ELSE open_sells + o.open_value END
         WHERE key_id = o.key_id AND symbol = o.symbol;
        UPDATE futu_ledger.keys SET open_count = open_count + 1 WHERE key_id = o.key_id;
    END IF;
END
$fn$;

DROP FUNCTION futu_ledger.charge(text[], text[], bigint[], text[], boolean[], bigint[]);

-- A burst's charges, in order, each checked and taken atomically under its key's row, in
-- the order of the in-memory ledger: duplicate, rate, daily value, open orders, position.
-- p_rates and p_caps hold NULL where the key has no such limit; p_tickets a fresh random
-- ticket a charge. p_symbols is NULL for an order the ledger does not follow; for one it
-- follows, p_buys, p_qtys, p_prices and p_accs describe it, p_max_open, p_max_pos and
-- p_dup_ns are the key's limits (NULL where it has none) and p_fps its fingerprint.
-- Outcomes: 'P' taken, 'D' a dry run that would pass, 'R' the rate, 'V' the daily value,
-- 'X' a duplicate (r_since_ns), 'O' open orders (r_open), 'S' the position (r_position).
CREATE FUNCTION futu_ledger.charge(
    p_keys text[], p_values text[], p_rates bigint[], p_caps text[], p_dry boolean[],
    p_tickets bigint[], p_symbols text[], p_buys boolean[], p_qtys float8[],
    p_prices float8[], p_accs text[], p_max_open bigint[], p_max_pos text[],
    p_dup_ns bigint[], p_fps text[])
RETURNS TABLE (r_idx integer, r_outcome "char", r_in_window bigint, r_retry_ns bigint,
               r_used text, r_at timestamptz, r_day integer, r_since_ns bigint,
               r_open bigint, r_position text)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_n      integer := coalesce(array_length(p_keys, 1), 0);
    v_key    text;
    k        futu_ledger.keys;
    v_t      timestamptz;
    v_today  integer;
    v_edge   timestamptz;
    v_count  bigint;
    v_fresh  bigint;
    v_value  numeric;
    v_rate   bigint;
    v_retry  bigint;
    v_retry_rate bigint;
    v_nth    timestamptz;
    v_tickets bigint[];
    v_values numeric[];
    v_keys   text[];
    v_seen   timestamptz;
    v_since  bigint;
    v_follow boolean;
    v_pos    futu_ledger.positions;
    v_held   numeric;
BEGIN
    -- The keys in sorted order, so hosts always lock them in the same order; most bursts
    -- are of one key.
    IF v_n = 0 THEN
        RETURN;
    ELSIF p_keys[1] = ALL (p_keys) THEN
        v_keys := ARRAY[p_keys[1]];
    ELSE
        SELECT array_agg(DISTINCT u ORDER BY u) INTO v_keys FROM unnest(p_keys) AS u;
    END IF;
    FOREACH v_key IN ARRAY v_keys LOOP
        SELECT * INTO k FROM futu_ledger.keys WHERE key_id = v_key FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO futu_ledger.keys (key_id, day, used, window_count, window_edge, last_at)
                VALUES (v_key, 0, 0, 0, '-infinity', '-infinity') ON CONFLICT DO NOTHING;
            SELECT * INTO k FROM futu_ledger.keys WHERE key_id = v_key FOR UPDATE;
        END IF;
        -- Read after the lock: whoever held it before committed earlier.
        v_t := greatest(clock_timestamp(), k.last_at);
        v_today := floor(extract(epoch FROM v_t) / 86400)::integer;
        v_edge := v_t - interval '60 seconds';
        v_count := k.window_count;
        IF k.last_at <= v_edge THEN
            v_count := 0;
        ELSIF v_edge > k.window_edge THEN
            v_count := v_count - (SELECT count(*) FROM futu_ledger.consumptions c
                                   WHERE c.key_id = v_key AND c.at > k.window_edge
                                     AND c.at <= v_edge);
        END IF;
        v_edge := greatest(v_edge, k.window_edge);
        IF v_today > k.day THEN
            k.day := v_today;
            k.used := 0;
        END IF;
        v_fresh := 0;
        v_retry := NULL;
        v_tickets := '{}';
        v_values := '{}';
        FOR i IN 1 .. v_n LOOP
            CONTINUE WHEN p_keys[i] <> v_key;
            r_idx := i;
            r_in_window := NULL; r_retry_ns := NULL; r_used := NULL; r_at := NULL; r_day := NULL;
            r_since_ns := NULL; r_open := NULL; r_position := NULL;
            -- The same order within the duplicate window.
            IF p_symbols[i] IS NOT NULL AND p_dup_ns[i] IS NOT NULL THEN
                SELECT x.at INTO v_seen FROM futu_ledger.recent_orders x
                 WHERE x.key_id = v_key AND x.fingerprint = p_fps[i];
                IF FOUND THEN
                    v_since := greatest(0, (extract(epoch FROM v_t - v_seen) * 1000000000)::bigint);
                    IF v_since < p_dup_ns[i] THEN
                        r_outcome := 'X';
                        r_since_ns := v_since;
                        RETURN NEXT;
                        CONTINUE;
                    END IF;
                END IF;
            END IF;
            v_rate := p_rates[i];
            IF v_rate IS NOT NULL AND v_count >= v_rate THEN
                IF v_retry IS NULL OR v_retry_rate <> v_rate THEN
                    -- Until the v_rate-th newest order leaves the window (0: a rate of 0,
                    -- which no wait changes).
                    v_retry_rate := v_rate;
                    IF v_rate = 0 THEN
                        v_retry := 0;
                    ELSIF v_rate <= v_fresh THEN
                        v_retry := 60000000000;
                    ELSE
                        SELECT c.at INTO v_nth FROM futu_ledger.consumptions c
                         WHERE c.key_id = v_key AND c.at > v_edge
                         ORDER BY c.at DESC OFFSET v_rate - v_fresh - 1 LIMIT 1;
                        v_retry := CASE WHEN v_nth IS NULL THEN 60000000000
                            ELSE greatest(0, 60000000000
                                - (extract(epoch FROM v_t - v_nth) * 1000000000)::bigint) END;
                    END IF;
                END IF;
                r_outcome := 'R';
                r_in_window := v_count;
                r_retry_ns := v_retry;
                RETURN NEXT;
                CONTINUE;
            END IF;
            v_value := p_values[i]::numeric;
            IF p_caps[i] IS NOT NULL AND k.used + v_value > p_caps[i]::numeric THEN
                r_outcome := 'V';
                r_used := k.used::text;
                RETURN NEXT;
                CONTINUE;
            END IF;
            v_follow := p_symbols[i] IS NOT NULL
                        AND (p_max_open[i] IS NOT NULL OR p_max_pos[i] IS NOT NULL);
            -- Open orders: the key's limit, and at most 100 000 whatever it is.
            IF v_follow AND (k.open_count >= p_max_open[i] OR k.open_count >= 100000) THEN
                r_outcome := 'O';
                r_open := k.open_count;
                RETURN NEXT;
                CONTINUE;
            END IF;
            -- The symbol's position in the order's direction: what is held that way, plus
            -- the open orders that add to it.
            IF p_symbols[i] IS NOT NULL AND p_max_pos[i] IS NOT NULL THEN
                SELECT * INTO v_pos FROM futu_ledger.positions x
                 WHERE x.key_id = v_key AND x.symbol = p_symbols[i];
                IF NOT FOUND THEN
                    v_held := 0;
                ELSIF p_buys[i] THEN
                    v_held := greatest(0, v_pos.bought - v_pos.sold) + v_pos.open_buys;
                ELSE
                    v_held := greatest(0, v_pos.sold - v_pos.bought) + v_pos.open_sells;
                END IF;
                IF v_held + v_value > p_max_pos[i]::numeric THEN
                    r_outcome := 'S';
                    r_position := v_held::text;
                    RETURN NEXT;
                    CONTINUE;
                END IF;
            END IF;
            IF p_dry[i] THEN
                r_outcome := 'D';
                RETURN NEXT;
                CONTINUE;
            END IF;
            v_count := v_count + 1;
            v_fresh := v_fresh + 1;
            k.used := k.used + v_value;
            v_tickets := v_tickets || p_tickets[i];
            v_values := v_values || v_value;
            IF p_symbols[i] IS NOT NULL AND p_dup_ns[i] IS NOT NULL THEN
                INSERT INTO futu_ledger.recent_orders (key_id, fingerprint, at, ticket)
                    VALUES (v_key, p_fps[i], v_t, p_tickets[i])
                    ON CONFLICT (key_id, fingerprint)
                    DO UPDATE SET at = EXCLUDED.at, ticket = EXCLUDED.ticket;
            END IF;
            IF v_follow THEN
                INSERT INTO futu_ledger.positions AS x (key_id, symbol, open_buys, open_sells)
                    VALUES (v_key, p_symbols[i],
                            CASE WHEN p_buys[i] THEN v_value ELSE 0 END,
                            CASE WHEN p_buys[i] THEN 0 ELSE v_value END)
                    ON CONFLICT (key_id, symbol) DO UPDATE
                    SET open_buys = x.open_buys + EXCLUDED.open_buys,
                        open_sells = x.open_sells + EXCLUDED.open_sells;
                INSERT INTO futu_ledger.orders (ticket, key_id, symbol, buys, qty, price, acc_id,
                                                at, open_value)
                    VALUES (p_tickets[i], v_key, p_symbols[i], p_buys[i], p_qtys[i], p_prices[i],
                            p_accs[i]::numeric, v_t, v_value);
                k.open_count := k.open_count + 1;
            END IF;
            r_outcome := 'P';
            r_at := v_t;
            r_day := k.day;
            RETURN NEXT;
        END LOOP;
        IF v_fresh > 0 THEN
            INSERT INTO futu_ledger.consumptions (ticket, key_id, at, day, value)
                SELECT u.ticket, v_key, v_t, k.day, u.value
                  FROM unnest(v_tickets, v_values) AS u(ticket, value);
            k.last_at := v_t;
        END IF;
        UPDATE futu_ledger.keys
           SET day = k.day, used = k.used, window_count = v_count, window_edge = v_edge,
               last_at = k.last_at, open_count = k.open_count
         WHERE key_id = v_key;
    END LOOP;
END
$fn$;

-- Takes back what a charge took (its audit records could not be written): the rows go,
-- and with them their places in the window, their value in the day's total, the orders
-- followed and their fingerprints.
CREATE OR REPLACE FUNCTION futu_ledger.cancel(p_tickets bigint[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    o futu_ledger.orders;
BEGIN
    PERFORM 1 FROM futu_ledger.keys
      WHERE key_id IN (SELECT c.key_id FROM futu_ledger.consumptions c
                        WHERE c.ticket = ANY (p_tickets))
      ORDER BY key_id FOR UPDATE;
    FOR o IN SELECT * FROM futu_ledger.orders x WHERE x.ticket = ANY (p_tickets) LOOP
        PERFORM futu_ledger.close_order(o.ticket, clock_timestamp(), 'L');
        DELETE FROM futu_ledger.orders WHERE ticket = o.ticket;
    END LOOP;
    DELETE FROM futu_ledger.recent_orders WHERE ticket = ANY (p_tickets);
    WITH gone AS (
        DELETE FROM futu_ledger.consumptions c WHERE c.ticket = ANY (p_tickets)
        RETURNING c.key_id, c.at, c.day, c.value
    )
    UPDATE futu_ledger.keys k
       SET window_count = k.window_count
               - (SELECT count(*) FROM gone g WHERE g.key_id = k.key_id AND g.at > k.window_edge),
           used = greatest(0, k.used
               - coalesce((SELECT sum(g.value) FROM gone g
                            WHERE g.key_id = k.key_id AND g.day = k.day), 0))
     WHERE k.key_id IN (SELECT g.key_id FROM gone g);
END
$fn$;

-- Refunds the order a ticket names, once, within 15 minutes of it, and only while the
-- order's UTC day is the key's day and not over. An order the ledger follows is finished
-- by it, as if rejected.
-- Outcomes: 'R' released, 'U' unknown, 'A' released before, 'E' expired.
CREATE OR REPLACE FUNCTION futu_ledger.release(p_ticket bigint)
RETURNS TABLE (r_outcome "char", r_key_id text, r_refunded text, r_day integer)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_key    text;
    k        futu_ledger.keys;
    c        futu_ledger.consumptions;
    v_t      timestamptz;
    v_today  integer;
    v_refund numeric;
BEGIN
    SELECT x.key_id INTO v_key FROM futu_ledger.consumptions x WHERE x.ticket = p_ticket;
    IF FOUND THEN
        SELECT * INTO k FROM futu_ledger.keys WHERE key_id = v_key FOR UPDATE;
        SELECT * INTO c FROM futu_ledger.consumptions x WHERE x.ticket = p_ticket FOR UPDATE;
    END IF;
    -- Read after the lock, never behind the key's last order (as in charge).
    v_t := greatest(clock_timestamp(), k.last_at);
    v_today := floor(extract(epoch FROM v_t) / 86400)::integer;
    IF v_key IS NULL OR c.ticket IS NULL THEN
        r_outcome := 'U';
    ELSIF c.released THEN
        r_outcome := 'A';
    ELSIF clock_timestamp() - c.at >= interval '15 minutes' THEN
        r_outcome := 'E';
    ELSE
        v_refund := CASE WHEN k.day = c.day AND c.day >= v_today
                         THEN least(c.value, k.used) ELSE 0 END;
        UPDATE futu_ledger.keys SET used = used - v_refund WHERE key_id = c.key_id;
        UPDATE futu_ledger.consumptions SET released = true WHERE ticket = p_ticket;
        PERFORM futu_ledger.close_order(p_ticket, v_t, 'L');
        r_outcome := 'R';
        r_key_id := c.key_id;
        r_refunded := v_refund::text;
        r_day := c.day;
    END IF;
    RETURN NEXT;
END
$fn$;

-- Takes back a release (its audit record could not be written): the order it finished is
-- open again.
CREATE OR REPLACE FUNCTION futu_ledger.cancel_release(p_ticket bigint, p_key text,
                                                      p_refunded text, p_day integer)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM futu_ledger.keys WHERE key_id = p_key FOR UPDATE;
    UPDATE futu_ledger.keys
       SET used = used + CASE WHEN day = p_day THEN p_refunded::numeric ELSE 0 END
     WHERE key_id = p_key;
    UPDATE futu_ledger.consumptions SET released = false WHERE ticket = p_ticket;
    IF EXISTS (SELECT 1 FROM futu_ledger.orders
                WHERE ticket = p_ticket AND finished_how = 'L') THEN
        PERFORM futu_ledger.reopen_order(p_ticket);
    END IF;
END
$fn$;

-- Applies what became of an allowed order, once, as the in-memory ledger's order_event
-- does. p_kind: 'A' accepted, 'P' partially filled, 'F' filled, 'C' cancelled, 'R'
-- rejected; a fill's p_filled_qty is the quantity filled so far and p_fill_price their
-- average price (checked by the daemon: finite, above zero), p_filled_value their value
-- (NULL: too large to count).
-- Outcomes: 'A' applied, 'D' a duplicate (applied before, or the order is finished), 'U'
-- an unknown ticket, 'B' bad figures (r_bad: 'Q' more filled than the order's quantity,
-- 'J' a rejection of an order with something filled; 'V' a
-- fill too large to count; r_qty the order's quantity for 'Q', its filled quantity for
-- 'J'). r_refunded (not NULL) when a rejection released the order.
-- r_prev_*: the order as it was, when the event changed it; r_finished: the event
-- finished it.
CREATE FUNCTION futu_ledger.order_event(p_ticket bigint, p_kind "char", p_filled_qty float8,
                                        p_fill_price float8, p_filled_value text)
RETURNS TABLE (r_outcome "char", r_key_id text, r_bad "char", r_qty float8,
               r_refunded text, r_day integer, r_prev_filled_qty float8,
               r_prev_filled_value text, r_prev_open_value text, r_prev_accepted boolean,
               r_finished boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_key    text;
    k        futu_ledger.keys;
    o        futu_ledger.orders;
    c        futu_ledger.consumptions;
    v_t      timestamptz;
    v_today  integer;
    v_rest   float8;
    v_filled numeric;
    v_open   numeric;
    v_refund numeric;
BEGIN
    r_finished := false;
    SELECT x.key_id INTO v_key FROM futu_ledger.orders x WHERE x.ticket = p_ticket;
    IF NOT FOUND THEN
        SELECT x.key_id INTO v_key FROM futu_ledger.consumptions x WHERE x.ticket = p_ticket;
    END IF;
    IF v_key IS NULL THEN
        r_outcome := 'U';
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT * INTO k FROM futu_ledger.keys WHERE key_id = v_key FOR UPDATE;
    v_t := greatest(clock_timestamp(), k.last_at);
    v_today := floor(extract(epoch FROM v_t) / 86400)::integer;
    r_key_id := v_key;
    SELECT * INTO o FROM futu_ledger.orders x WHERE x.ticket = p_ticket;
    IF NOT FOUND THEN
        -- An order the ledger does not follow: a rejection releases it; other events are
        -- applied with nothing to change while it is within the release window.
        SELECT * INTO c FROM futu_ledger.consumptions x WHERE x.ticket = p_ticket FOR UPDATE;
        IF NOT FOUND THEN
            r_outcome := 'U';
        ELSIF p_kind = 'R' AND c.released THEN
            r_outcome := 'D';
        ELSIF clock_timestamp() - c.at >= interval '15 minutes' THEN
            r_outcome := 'U';
        ELSIF p_kind = 'R' THEN
            v_refund := CASE WHEN k.day = c.day AND c.day >= v_today
                             THEN least(c.value, k.used) ELSE 0 END;
            UPDATE futu_ledger.keys SET used = used - v_refund WHERE key_id = v_key;
            UPDATE futu_ledger.consumptions SET released = true WHERE ticket = p_ticket;
            r_outcome := 'A';
            r_refunded := v_refund::text;
            r_day := c.day;
        ELSE
            r_outcome := 'A';
        END IF;
        RETURN NEXT;
        RETURN;
    END IF;
    IF o.finished_at IS NOT NULL THEN
        r_outcome := 'D';
        RETURN NEXT;
        RETURN;
    END IF;
    r_prev_filled_qty := o.filled_qty;
    r_prev_filled_value := o.filled_value::text;
    r_prev_open_value := o.open_value::text;
    r_prev_accepted := o.accepted;
    IF p_kind = 'A' THEN
        IF o.accepted THEN
            r_outcome := 'D';
        ELSE
            UPDATE futu_ledger.orders SET accepted = true WHERE ticket = p_ticket;
            r_outcome := 'A';
        END IF;
    ELSIF p_kind IN ('P', 'F') THEN
        -- A little over the order's quantity is float rounding at the broker.
        IF p_filled_qty > o.qty * (1::float8 + 1e-9::float8) THEN
            r_outcome := 'B';
            r_bad := 'Q';
            r_qty := o.qty;
        ELSIF p_filled_qty < o.filled_qty OR (p_filled_qty = o.filled_qty AND p_kind = 'P') THEN
            r_outcome := 'D';
        ELSIF p_filled_value IS NULL THEN
            r_outcome := 'B';
            r_bad := 'V';
        ELSE
            v_filled := p_filled_value::numeric;
            v_rest := greatest(o.qty - p_filled_qty, 0::float8);
            v_open := CASE WHEN p_kind = 'P' AND o.price IS NOT NULL AND v_rest > 0
                           THEN coalesce(futu_ledger.order_value(v_rest, o.price), o.open_value)
                           ELSE 0 END;
            UPDATE futu_ledger.positions
               SET bought = CASE WHEN o.buys THEN greatest(0, bought - o.filled_value) + v_filled
                                 ELSE bought END,
                   sold = CASE WHEN o.buys THEN sold
                               ELSE greatest(0, sold - o.filled_value) + v_filled END,
                   open_buys = CASE WHEN o.buys THEN greatest(0, open_buys - o.open_value) + v_open
                                    ELSE open_buys END,
                   open_sells = CASE WHEN o.buys THEN open_sells
                                     ELSE greatest(0, open_sells - o.open_value) + v_open END
             WHERE key_id = v_key AND symbol = o.symbol;
            UPDATE futu_ledger.orders
               SET filled_qty = p_filled_qty, filled_value = v_filled, open_value = v_open,
                   accepted = true
             WHERE ticket = p_ticket;
            IF p_kind = 'F' THEN
                PERFORM futu_ledger.close_order(p_ticket, v_t, 'F');
                r_finished := true;
            END IF;
            r_outcome := 'A';
        END IF;
    ELSIF p_kind = 'C' THEN
        PERFORM futu_ledger.close_order(p_ticket, v_t, 'C');
        r_finished := true;
        r_outcome := 'A';
    ELSIF p_kind = 'R' THEN
        IF o.filled_qty > 0 THEN
            r_outcome := 'B';
            r_bad := 'J';
            r_qty := o.filled_qty;
        ELSE
            PERFORM futu_ledger.close_order(p_ticket, v_t, 'R');
            r_finished := true;
            r_outcome := 'A';
            -- Its value back, unless released before or past the release window (its
            -- consumption pruned).
            SELECT * INTO c FROM futu_ledger.consumptions x
             WHERE x.ticket = p_ticket AND NOT x.released FOR UPDATE;
            IF FOUND THEN
                v_refund := CASE WHEN k.day = c.day AND c.day >= v_today
                                 THEN least(c.value, k.used) ELSE 0 END;
                UPDATE futu_ledger.keys SET used = used - v_refund WHERE key_id = v_key;
                UPDATE futu_ledger.consumptions SET released = true WHERE ticket = p_ticket;
                r_refunded := v_refund::text;
                r_day := c.day;
            END IF;
        END IF;
    ELSE
        RAISE EXCEPTION 'unknown order event kind %', p_kind;
    END IF;
    IF r_outcome <> 'A' THEN
        r_prev_filled_qty := NULL;
        r_prev_filled_value := NULL;
        r_prev_open_value := NULL;
        r_prev_accepted := NULL;
    END IF;
    RETURN NEXT;
END
$fn$;

-- Takes back an order event (its audit record could not be written): the order as it
-- was (p_prev_*, NULL when the event did not change it), open again if the event finished
-- it, its position by the difference, and the release a rejection made.
CREATE FUNCTION futu_ledger.cancel_event(p_ticket bigint, p_prev_filled_qty float8,
                                         p_prev_filled_value text, p_prev_open_value text,
                                         p_prev_accepted boolean, p_finished boolean,
                                         p_refunded text, p_day integer)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_key text;
    o     futu_ledger.orders;
BEGIN
    SELECT x.key_id INTO v_key FROM futu_ledger.orders x WHERE x.ticket = p_ticket;
    IF NOT FOUND THEN
        SELECT x.key_id INTO v_key FROM futu_ledger.consumptions x WHERE x.ticket = p_ticket;
    END IF;
    IF v_key IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM futu_ledger.keys WHERE key_id = v_key FOR UPDATE;
    IF p_prev_filled_qty IS NOT NULL THEN
        IF p_finished THEN
            PERFORM futu_ledger.reopen_order(p_ticket);
        END IF;
        SELECT * INTO o FROM futu_ledger.orders x WHERE x.ticket = p_ticket;
        IF FOUND AND o.finished_at IS NULL THEN
            UPDATE futu_ledger.positions
               SET bought = CASE WHEN o.buys
                                 THEN greatest(0, bought - o.filled_value) + p_prev_filled_value::numeric
                                 ELSE bought END,
                   sold = CASE WHEN o.buys THEN sold
                               ELSE greatest(0, sold - o.filled_value) + p_prev_filled_value::numeric END,
                   open_buys = CASE WHEN o.buys
                                    THEN greatest(0, open_buys - o.open_value) + p_prev_open_value::numeric
                                    ELSE open_buys END,
                   open_sells = CASE WHEN o.buys THEN open_sells
                                     ELSE greatest(0, open_sells - o.open_value) + p_prev_open_value::numeric END
             WHERE key_id = v_key AND symbol = o.symbol;
            UPDATE futu_ledger.orders
               SET filled_qty = p_prev_filled_qty, filled_value = p_prev_filled_value::numeric,
                   open_value = p_prev_open_value::numeric, accepted = p_prev_accepted
             WHERE ticket = p_ticket;
        END IF;
    END IF;
    IF p_refunded IS NOT NULL THEN
        UPDATE futu_ledger.keys
           SET used = used + CASE WHEN day = p_day THEN p_refunded::numeric ELSE 0 END
         WHERE key_id = v_key;
        UPDATE futu_ledger.consumptions SET released = false WHERE ticket = p_ticket;
    END IF;
END
$fn$;

-- Housekeeping: keys idle for a minute have an empty window (a key being charged is
-- skipped: its charge moves its window), and consumptions past the release window go, at
-- most p_batch of them; so do fingerprints past the longest duplicate window (an hour) and
-- orders finished a day ago. Open orders stay. Returns how many consumptions went.
CREATE OR REPLACE FUNCTION futu_ledger.prune(p_batch integer) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    v_t    timestamptz := clock_timestamp();
    v_gone bigint;
BEGIN
    UPDATE futu_ledger.keys k SET window_count = 0, window_edge = k.last_at
     WHERE k.key_id IN (SELECT x.key_id FROM futu_ledger.keys x
                         WHERE x.window_count > 0 AND x.last_at <= v_t - interval '60 seconds'
                         ORDER BY x.key_id FOR UPDATE SKIP LOCKED);
    DELETE FROM futu_ledger.consumptions
     WHERE ticket IN (SELECT c.ticket FROM futu_ledger.consumptions c
                       WHERE c.at < v_t - interval '15 minutes'
                       ORDER BY c.at LIMIT p_batch);
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    DELETE FROM futu_ledger.recent_orders
     WHERE (key_id, fingerprint) IN (SELECT x.key_id, x.fingerprint FROM futu_ledger.recent_orders x
                                      WHERE x.at < v_t - interval '1 hour'
                                      ORDER BY x.at LIMIT p_batch)
       AND at < v_t - interval '1 hour';
    DELETE FROM futu_ledger.orders
     WHERE ticket IN (SELECT x.ticket FROM futu_ledger.orders x
                       WHERE x.finished_at < v_t - interval '1 day'
                       ORDER BY x.finished_at LIMIT p_batch)
       AND finished_at < v_t - interval '1 day';
    RETURN v_gone;
END
$fn$;
