-- futu-authd's limit ledger on PostgreSQL, schema version 2: a release refunds nothing
-- once the order's UTC day is over. A key's row rolls over to a new day only when the
-- key is next charged, so right after midnight it may still hold the order's day; the
-- day is now read from the database's clock, as `charge` reads it.

-- Refunds the order a ticket names, once, within 15 minutes of it, and only while the
-- order's UTC day is the key's day and not over.
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
        r_outcome := 'R';
        r_key_id := c.key_id;
        r_refunded := v_refund::text;
        r_day := c.day;
    END IF;
    RETURN NEXT;
END
$fn$;
