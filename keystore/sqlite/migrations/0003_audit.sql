-- The lifecycle audit trail: one row per change of a key, hash-chained
-- (see package audit). Times are Unix microseconds (UTC).
CREATE TABLE keygate_audit (
    seq     INTEGER PRIMARY KEY CHECK (seq > 0),
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    key_id  TEXT    NOT NULL DEFAULT '',
    owner   TEXT    NOT NULL DEFAULT '',
    before  TEXT    NOT NULL DEFAULT '',
    after   TEXT    NOT NULL DEFAULT '',
    prev    BLOB    NOT NULL CHECK (length(prev) = 32),
    hash    BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

CREATE INDEX keygate_audit_key ON keygate_audit (key_id, seq);
CREATE INDEX keygate_audit_owner ON keygate_audit (owner, seq);
CREATE INDEX keygate_audit_at ON keygate_audit (at);
