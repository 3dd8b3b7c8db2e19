-- Pepper rotation. Each key records the pepper its digest was made with
-- (the first 8 bytes of the pepper's check value, hex), and
-- keygate_peppers registers every pepper processes on this store have
-- used, in order: the last registered is the newest. A gateway re-hashes
-- a key made with an older pepper to the newest on its first successful
-- use; pepper-status counts the keys still on each pepper. Times are Unix
-- microseconds (UTC).
ALTER TABLE keygate_keys ADD COLUMN pepper_id TEXT;

UPDATE keygate_keys SET pepper_id = (
    SELECT lower(hex(substr(value, 1, 8))) FROM keygate_meta
    WHERE name = 'pepper_check' AND length(value) = 32);

CREATE TABLE keygate_peppers (
    id            TEXT    PRIMARY KEY,
    check_value   BLOB    NOT NULL UNIQUE CHECK (length(check_value) = 32),
    seq           INTEGER NOT NULL UNIQUE,
    registered_at INTEGER NOT NULL
) STRICT;

INSERT INTO keygate_peppers (id, check_value, seq, registered_at)
SELECT lower(hex(substr(value, 1, 8))), value, 1, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM keygate_meta
WHERE name = 'pepper_check' AND length(value) = 32;
