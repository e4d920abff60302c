-- The write-side store: the append-only event table (also the relay's outbox), API keys,
-- idempotency records and relay checkpoints. Schema pinned in docs/architecture.md.

CREATE TABLE events (
    seq         bigserial PRIMARY KEY,          -- append order; the relay reads below the xid horizon
    event_id    uuid NOT NULL UNIQUE,
    flag_key    text NOT NULL,                  -- stream key: flag key, or 'segment:<key>'
    version     integer NOT NULL CHECK (version >= 1),
    type        text NOT NULL,
    environment text,
    occurred_at timestamptz NOT NULL,
    actor       text NOT NULL,
    hash        text NOT NULL,
    body        text NOT NULL,                  -- Event.to_json(), verbatim
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (flag_key, version)
);

-- The relay's cursor is (txid, seq): see events/store.py for why seq alone can skip a row.
CREATE INDEX events_txid_seq_idx ON events (txid, seq);
CREATE INDEX events_occurred_at_idx ON events (occurred_at);
CREATE INDEX events_actor_idx ON events (actor);
CREATE INDEX events_environment_occurred_at_idx ON events (environment, occurred_at)
    WHERE environment IS NOT NULL;

CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Events are immutable; record a new, compensating event instead.';
END;
$$;

CREATE TRIGGER events_append_only_rows
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_append_only_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    principal   text NOT NULL CHECK (length(principal) BETWEEN 1 AND 256),
    role        text NOT NULL CHECK (role IN ('admin', 'writer', 'reader', 'ops', 'alerts')),
    key_hash    text NOT NULL UNIQUE,            -- SHA-256 hex of the secret; the secret is never stored
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE idempotency_keys (
    principal    text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,                  -- SHA-256 hex of method + path + canonical body
    status       integer NOT NULL,
    response     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);

CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

CREATE TABLE relay_checkpoints (
    name       text PRIMARY KEY,
    last_seq   bigint NOT NULL DEFAULT 0,
    last_txid  xid8 NOT NULL DEFAULT '0',        -- with last_seq, the relay's (txid, seq) cursor
    updated_at timestamptz NOT NULL DEFAULT now()
);
