-- A log of key changes that gateways poll, so that a change made by
-- another process (the CLI) reaches their caches within the poll
-- interval. SQLite has one writer at a time, so seq order is commit
-- order and a poller that remembers the last seq it saw misses nothing.
CREATE TABLE keygate_key_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    digest     BLOB    NOT NULL,
    changed_at INTEGER NOT NULL -- Unix microseconds
) STRICT;

CREATE INDEX keygate_key_changes_time ON keygate_key_changes (changed_at);

CREATE TRIGGER keygate_keys_changes_insert AFTER INSERT ON keygate_keys
BEGIN
    INSERT INTO keygate_key_changes (digest, changed_at)
    VALUES (NEW.digest, CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;

CREATE TRIGGER keygate_keys_changes_update AFTER UPDATE ON keygate_keys
BEGIN
    INSERT INTO keygate_key_changes (digest, changed_at)
    VALUES (OLD.digest, CAST(unixepoch('subsec') * 1000000 AS INTEGER));
    INSERT INTO keygate_key_changes (digest, changed_at)
    SELECT NEW.digest, CAST(unixepoch('subsec') * 1000000 AS INTEGER) WHERE NEW.digest <> OLD.digest;
END;

CREATE TRIGGER keygate_keys_changes_delete AFTER DELETE ON keygate_keys
BEGIN
    INSERT INTO keygate_key_changes (digest, changed_at)
    VALUES (OLD.digest, CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;
