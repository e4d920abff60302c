-- The log epoch of each relay: how many times it found the broker had lost its log and
-- republished everything. Stamped on every record it publishes (header fs_log_epoch); projectors
-- keep it beside their checkpoints and start over from the beginning of the log when it grows
-- (docs/read-side.md, "A broker that lost its log").
CREATE TABLE IF NOT EXISTS relay_log_epochs (
    relay      text PRIMARY KEY,
    epoch      integer NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
