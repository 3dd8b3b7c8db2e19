-- Usage per key and minute, added to by gateways in batches. minute is
-- the Unix time (seconds, UTC) of the minute's start.
CREATE TABLE keygate_usage (
    key_id      TEXT    NOT NULL,
    minute      INTEGER NOT NULL,
    owner       TEXT    NOT NULL DEFAULT '',
    status_1xx  INTEGER NOT NULL DEFAULT 0,
    status_2xx  INTEGER NOT NULL DEFAULT 0,
    status_3xx  INTEGER NOT NULL DEFAULT 0,
    status_4xx  INTEGER NOT NULL DEFAULT 0,
    status_5xx  INTEGER NOT NULL DEFAULT 0,
    bytes_in    INTEGER NOT NULL DEFAULT 0,
    bytes_out   INTEGER NOT NULL DEFAULT 0,
    latency_us  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, minute)
) STRICT;

CREATE INDEX keygate_usage_owner ON keygate_usage (owner, minute);
CREATE INDEX keygate_usage_minute ON keygate_usage (minute);

-- Batches already written (see the PostgreSQL schema). at is Unix
-- microseconds.
CREATE TABLE keygate_usage_batches (
    id  BLOB    PRIMARY KEY CHECK (length(id) = 16),
    at  INTEGER NOT NULL
) STRICT;

CREATE INDEX keygate_usage_batches_at ON keygate_usage_batches (at);

-- When each key was last used (Unix microseconds).
CREATE TABLE keygate_last_used (
    key_id  TEXT    PRIMARY KEY,
    at      INTEGER NOT NULL
) STRICT;
