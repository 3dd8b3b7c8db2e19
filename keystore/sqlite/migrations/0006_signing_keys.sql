-- The key pairs gateways sign identity tokens (JWT) with, shared by every
-- gateway on the store. private_key is sealed with AES-256-GCM under a key
-- derived from the pepper (never plaintext). retires_at is NULL for the key
-- gateways sign with, one per algorithm (the unique index, which also makes
-- gateways that start at once agree on one first key); a key a rotation
-- replaced is published in the JWKS until retires_at. Times are Unix
-- microseconds (UTC).
CREATE TABLE keygate_signing_keys (
    kid          TEXT    PRIMARY KEY,
    algorithm    TEXT    NOT NULL,
    public_key   BLOB    NOT NULL,
    private_key  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    activated_at INTEGER NOT NULL,
    retires_at   INTEGER
) STRICT;

CREATE UNIQUE INDEX keygate_signing_keys_current ON keygate_signing_keys (algorithm) WHERE retires_at IS NULL;
