-- futu-authd's key store on PostgreSQL, schema version 1. Applied by the daemon at start
-- (key_store::pg::schema), in one transaction, under an advisory lock.
--
-- keys.json in parts: a row a key record, exactly as keys.json writes it, and every other
-- top-level field of keys.json (`version`, `rotations`, and whatever keys.json gains
-- later) together as one JSON object; the daemons read both back with keys.json's own
-- strict loader, so a new top-level field needs no new schema version. Every change locks
-- the one `store` row first, so changes are applied one after another; it raises
-- `version` and notifies the channel `futu_keys` with the new version.

-- One row: which state the keys are in, and the top-level fields of keys.json but `keys`.
CREATE TABLE futu_keys.store (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    -- Raised by one at every change; a daemon serves the state of one version whole.
    version    bigint NOT NULL,
    -- keys.json's top-level fields but `keys`, e.g. {"version":1,"rotations":[…]}.
    top_level  json NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    -- Which futu-authd made the last change (its version and host).
    changed_by text NOT NULL
);
INSERT INTO futu_keys.store (version, top_level, changed_by)
    VALUES (0, '{"version":1}', 'the schema''s creation');

-- A row a key.
CREATE TABLE futu_keys.keys (
    id         text PRIMARY KEY,
    -- keys.json's order: the keys are read back sorted by it.
    seq        bigint NOT NULL,
    -- The key record as keys.json writes it (the digest of its plaintext, never the
    -- plaintext).
    record     json NOT NULL,
    -- The store version whose change wrote this row last.
    changed_in bigint NOT NULL
);
CREATE INDEX keys_seq ON futu_keys.keys (seq, id);

-- When each key was last allowed a check, to the minute: the newest any host wrote (each
-- writes at most once a minute). A key's row goes with the key.
CREATE TABLE futu_keys.last_used (
    id text PRIMARY KEY,
    at timestamptz NOT NULL
);
