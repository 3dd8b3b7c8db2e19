-- Key records. The key itself is never stored: digest is the
-- HMAC-SHA-256 of the key under the server's pepper.
CREATE TABLE keygate_keys (
    id          text        PRIMARY KEY,
    digest      bytea       NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    name        text        NOT NULL,
    owner       text        NOT NULL DEFAULT '',
    scopes      text[]      NOT NULL DEFAULT '{}',
    metadata    jsonb       NOT NULL DEFAULT '{}',
    hint        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz
);

CREATE INDEX keygate_keys_owner ON keygate_keys (owner, created_at, id);
CREATE INDEX keygate_keys_created ON keygate_keys (created_at, id);

-- Settings the store must remember, such as the pepper check value.
CREATE TABLE keygate_meta (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
