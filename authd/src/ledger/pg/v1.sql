-- futu-authd's limit ledger on PostgreSQL, schema version 1. Applied by the daemon at start
-- (ledger::pg::schema), in one transaction, under an advisory lock.
--
-- Amounts are whole units of 1e-8 (the daemon's Money), as numeric; times are the
-- database's clock_timestamp(), never a host's; a UTC day is days since 1970-01-01.
-- Lock order everywhere: key rows (sorted by key_id), then consumption rows.

-- One row a key: the rate window and today's total, locked by every call that changes them.
CREATE TABLE futu_ledger.keys (
    key_id       text PRIMARY KEY,
    -- The UTC day `used` counts; days only move forward.
    day          integer NOT NULL,
    -- Value allowed on `day`, less releases.
    used         numeric NOT NULL,
    -- Consumptions with `at` after `window_edge`: the rate window, counted incrementally.
    window_count bigint NOT NULL,
    -- Consumptions at or before it have been counted out of the window.
    window_edge  timestamptz NOT NULL,
    -- The newest consumption's time: a key's times never go backwards.
    last_at      timestamptz NOT NULL
) WITH (fillfactor = 50);

-- One row an allowed order, kept for the 15-minute release window.
CREATE TABLE futu_ledger.consumptions (
    -- The ticket the client holds: 64 random bits from the host that allowed the order.
    ticket   bigint PRIMARY KEY,
    key_id   text NOT NULL,
    at       timestamptz NOT NULL,
    day      integer NOT NULL,
    value    numeric NOT NULL,
    released boolean NOT NULL DEFAULT false
);
CREATE INDEX consumptions_key_at ON futu_ledger.consumptions (key_id, at);
CREATE INDEX consumptions_at ON futu_ledger.consumptions (at);

-- A burst's charges, in order, each checked against its key's rate window and daily total
-- and taken when both pass: one call, one transaction, one round trip. p_rates and p_caps
-- hold NULL where the key has no such limit; p_tickets a fresh random ticket a charge.
-- Outcomes: 'P' taken, 'D' a dry run that would pass, 'R' the rate, 'V' the daily value.
CREATE FUNCTION futu_ledger.charge(
    p_keys text[], p_values text[], p_rates bigint[], p_caps text[], p_dry boolean[],
    p_tickets bigint[])
RETURNS TABLE (r_idx integer, r_outcome "char", r_in_window bigint, r_retry_ns bigint,
               r_used text, r_at timestamptz, r_day integer)
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
            INSERT INTO futu_ledger.keys
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
               last_at = k.last_at
         WHERE key_id = v_key;
    END LOOP;
END
$fn$;

-- Takes back what a charge took (its audit records could not be written): the rows go,
-- and with them their places in the window and their value in the day's total.
CREATE FUNCTION futu_ledger.cancel(p_tickets bigint[]) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM futu_ledger.keys
      WHERE key_id IN (SELECT c.key_id FROM futu_ledger.consumptions c
                        WHERE c.ticket = ANY (p_tickets))
      ORDER BY key_id FOR UPDATE;
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

-- Refunds the order a ticket names, once, within 15 minutes of it.
-- Outcomes: 'R' released, 'U' unknown, 'A' released before, 'E' expired.
CREATE FUNCTION futu_ledger.release(p_ticket bigint)
RETURNS TABLE (r_outcome "char", r_key_id text, r_refunded text, r_day integer)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_key    text;
    k        futu_ledger.keys;
    c        futu_ledger.consumptions;
    v_refund numeric;
BEGIN
    SELECT x.key_id INTO v_key FROM futu_ledger.consumptions x WHERE x.ticket = p_ticket;
    IF FOUND THEN
        SELECT * INTO k FROM futu_ledger.keys WHERE key_id = v_key FOR UPDATE;
        SELECT * INTO c FROM futu_ledger.consumptions x WHERE x.ticket = p_ticket FOR UPDATE;
    END IF;
    IF v_key IS NULL OR c.ticket IS NULL THEN
        r_outcome := 'U';
    ELSIF c.released THEN
        r_outcome := 'A';
    ELSIF clock_timestamp() - c.at >= interval '15 minutes' THEN
        r_outcome := 'E';
    ELSE
        v_refund := CASE WHEN k.day = c.day THEN least(c.value, k.used) ELSE 0 END;
        UPDATE futu_ledger.keys SET used = used - v_refund WHERE key_id = c.key_id;
        UPDATE futu_ledger.consumptions SET released = true WHERE ticket = p_ticket;
        r_outcome := 'R';
        r_key_id := c.key_id;
        r_refunded := v_refund::text;
        r_day := c.day;
    END IF;
    RETURN NEXT;
END
$fn$;

-- Takes back a release (its audit record could not be written).
CREATE FUNCTION futu_ledger.cancel_release(p_ticket bigint, p_key text, p_refunded text,
                                           p_day integer) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE futu_ledger.keys
       SET used = used + CASE WHEN day = p_day THEN p_refunded::numeric ELSE 0 END
     WHERE key_id = p_key;
    UPDATE futu_ledger.consumptions SET released = false WHERE ticket = p_ticket;
END
$fn$;

-- Orders in the last 60 s and value used today by a key (one snapshot: STABLE).
CREATE FUNCTION futu_ledger.usage(p_key text)
RETURNS TABLE (r_in_window bigint, r_used text)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    k      futu_ledger.keys;
    v_t    timestamptz;
    v_edge timestamptz;
BEGIN
    SELECT * INTO k FROM futu_ledger.keys WHERE key_id = p_key;
    IF NOT FOUND THEN
        r_in_window := 0;
        r_used := '0';
        RETURN NEXT;
        RETURN;
    END IF;
    v_t := greatest(clock_timestamp(), k.last_at);
    v_edge := v_t - interval '60 seconds';
    IF k.last_at <= v_edge THEN
        r_in_window := 0;
    ELSIF v_edge > k.window_edge THEN
        r_in_window := k.window_count
            - (SELECT count(*) FROM futu_ledger.consumptions c
                WHERE c.key_id = p_key AND c.at > k.window_edge AND c.at <= v_edge);
    ELSE
        r_in_window := k.window_count;
    END IF;
    r_used := CASE WHEN k.day >= floor(extract(epoch FROM v_t) / 86400) THEN k.used ELSE 0 END::text;
    RETURN NEXT;
END
$fn$;

-- Housekeeping: keys idle for a minute have an empty window (a key being charged is
-- skipped: its charge moves its window), and consumptions past the release window go, at
-- most p_batch of them. Returns how many went.
CREATE FUNCTION futu_ledger.prune(p_batch integer) RETURNS bigint
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
    RETURN v_gone;
END
$fn$;
