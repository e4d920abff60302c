-- The relay's health, written by the relay process, read by the API (/readyz, /metrics), and the
-- offsets Kafka acknowledged, which let the relay notice a broker that lost its log.
-- See docs/write-side.md ("A broker that lost its log").

CREATE TABLE IF NOT EXISTS relay_status (
    name              text PRIMARY KEY,            -- the relay's name (its checkpoint's name)
    breaker_state     text NOT NULL CHECK (breaker_state IN ('closed', 'open', 'half_open')),
    backlog           bigint NOT NULL DEFAULT 0 CHECK (backlog >= 0),
    oldest_unpublished_at timestamptz,             -- occurred_at of the oldest event not yet published
    last_published_at timestamptz,                 -- when the last batch was acknowledged
    last_error        text,                        -- the last failure (cleared by a success)
    blocked_flags     integer NOT NULL DEFAULT 0,  -- streams held behind a relay dead letter
    log_resets        integer NOT NULL DEFAULT 0,  -- times the broker was found to have lost its log
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Per topic and partition, the highest offset Kafka acknowledged and the event stored there.
-- An acknowledgement at or below it, or a probe that does not find that event there, means the
-- broker lost its log: the relay recreates the topics and republishes from the beginning.
CREATE TABLE IF NOT EXISTS relay_acks (
    relay      text NOT NULL,
    topic      text NOT NULL,
    partition  integer NOT NULL CHECK (partition >= 0),
    last_offset bigint NOT NULL CHECK (last_offset >= 0),
    event_id   uuid NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relay, topic, partition)
);
