-- Key records. The key itself is never stored: digest is the
-- HMAC-SHA-256 of the key under the server's pepper. Times are Unix
-- microseconds (UTC), the precision PostgreSQL keeps as well.
CREATE TABLE keygate_keys (
    id          TEXT    PRIMARY KEY,
    digest      BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
    name        TEXT    NOT NULL,
    owner       TEXT    NOT NULL DEFAULT '',
    scopes      TEXT    NOT NULL DEFAULT '[]',
    metadata    TEXT    NOT NULL DEFAULT '{}',
    hint        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
) STRICT;

CREATE INDEX keygate_keys_owner ON keygate_keys (owner, created_at, id);
CREATE INDEX keygate_keys_created ON keygate_keys (created_at, id);

-- Settings the store must remember, such as the pepper check value.
CREATE TABLE keygate_meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
