-- The dead-letter queue: events (or raw Kafka records) that could not be published, projected or
-- acted on because of a *permanent* error, parked durably in Postgres so parking works while Kafka
-- is down. Rows are never deleted: redrive and purge resolve a letter (status, resolved_*), so
-- the table is also the record of what operators did. See docs/failure-handling.md.
-- Idempotent on purpose (IF NOT EXISTS), although the runner applies each file once.

CREATE TABLE IF NOT EXISTS dead_letters (
    id              bigserial PRIMARY KEY,
    stage           text NOT NULL CHECK (stage IN ('relay', 'projector', 'rollback')),
    dedup_key       text NOT NULL,          -- what failed, within its stage: 'event:<uuid>', 'kafka:t:p:o' ...
    flag_key        text,                   -- stream key; null only for a raw record that names none
    version         integer CHECK (version >= 1),
    event_id        uuid,
    event_body      text,                   -- Event.to_json(), verbatim, when the event could be read
    raw_record      bytea,                  -- the record's bytes, when it could not
    error_class     text NOT NULL,
    error_message   text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    kafka_topic     text,
    kafka_partition integer,
    kafka_offset    bigint,
    status          text NOT NULL DEFAULT 'parked' CHECK (status IN ('parked', 'redriven', 'purged')),
    resolved_at     timestamptz,
    resolved_by     text,
    resolve_reason  text,
    reprocessed_at  timestamptz,            -- a redriven letter the stage has processed again
    CONSTRAINT dead_letters_resolution CHECK ((status = 'parked') = (resolved_at IS NULL)),
    CONSTRAINT dead_letters_resolver CHECK (status = 'parked' OR resolved_by IS NOT NULL),
    CONSTRAINT dead_letters_purge_reason CHECK (status <> 'purged' OR length(resolve_reason) > 0),
    CONSTRAINT dead_letters_reprocessed CHECK (reprocessed_at IS NULL OR status = 'redriven')
);

-- One parked letter per failed thing and stage: parking it again counts an attempt (upsert).
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_parked_once
    ON dead_letters (stage, dedup_key) WHERE status = 'parked';
-- The ordering rule: a flag is blocked at a stage while it has a parked letter or a redriven one
-- not yet processed again; these are also the letters a stage releases, in version order.
CREATE INDEX IF NOT EXISTS dead_letters_blocking_by_flag
    ON dead_letters (stage, flag_key, version, id)
    WHERE status = 'parked' OR (status = 'redriven' AND reprocessed_at IS NULL);
-- Operators' listing: by status, paginated by id.
CREATE INDEX IF NOT EXISTS dead_letters_status_id ON dead_letters (status, id);
