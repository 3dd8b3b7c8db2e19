-- The lifecycle audit trail: one row per change of a key, hash-chained
-- (see package audit). before and after are kept as text, exactly as
-- written: the hashes cover these bytes, which jsonb would normalise.
CREATE TABLE keygate_audit (
    seq     bigint      PRIMARY KEY CHECK (seq > 0),
    at      timestamptz NOT NULL,
    actor   text        NOT NULL,
    action  text        NOT NULL,
    key_id  text        NOT NULL DEFAULT '',
    owner   text        NOT NULL DEFAULT '',
    before  text        NOT NULL DEFAULT '',
    after   text        NOT NULL DEFAULT '',
    prev    bytea       NOT NULL CHECK (octet_length(prev) = 32),
    hash    bytea       NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE INDEX keygate_audit_key ON keygate_audit (key_id, seq);
CREATE INDEX keygate_audit_owner ON keygate_audit (owner, seq);
CREATE INDEX keygate_audit_at ON keygate_audit (at);
