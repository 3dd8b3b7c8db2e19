-- Usage per key and minute, added to by gateways in batches.
CREATE TABLE keygate_usage (
    key_id      text        NOT NULL,
    minute      timestamptz NOT NULL,
    owner       text        NOT NULL DEFAULT '',
    status_1xx  bigint      NOT NULL DEFAULT 0,
    status_2xx  bigint      NOT NULL DEFAULT 0,
    status_3xx  bigint      NOT NULL DEFAULT 0,
    status_4xx  bigint      NOT NULL DEFAULT 0,
    status_5xx  bigint      NOT NULL DEFAULT 0,
    bytes_in    bigint      NOT NULL DEFAULT 0,
    bytes_out   bigint      NOT NULL DEFAULT 0,
    latency_us  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, minute)
);

CREATE INDEX keygate_usage_owner ON keygate_usage (owner, minute);
CREATE INDEX keygate_usage_minute ON keygate_usage (minute);

-- Batches already written: a batch retried after a commit whose outcome
-- was lost is recognised here and not counted twice.
CREATE TABLE keygate_usage_batches (
    id  bytea       PRIMARY KEY CHECK (octet_length(id) = 16),
    at  timestamptz NOT NULL
);

CREATE INDEX keygate_usage_batches_at ON keygate_usage_batches (at);

-- When each key was last used. Kept apart from keygate_keys so that
-- usage writes neither lock key rows nor fire the key change trigger.
CREATE TABLE keygate_last_used (
    key_id  text        PRIMARY KEY,
    at      timestamptz NOT NULL
);
