-- When a key starts to work (NULL: at once); a key's own limits (JSON: rate, burst, quota, uses, refill; '' for
-- none), the limits an owner's keys share (rate, burst, quota), and the
-- counters quotas and uses are enforced against, shared by
-- every gateway: one row per subject ("quota:<key id>", "uses:<key id>",
-- "owner_quota:<owner>")
-- and period, period_start in Unix seconds (0: the key's whole life).
-- Rotation links: the key a key replaced, and the key that replaced it
-- ('' for none).
ALTER TABLE keygate_keys ADD COLUMN replaces TEXT NOT NULL DEFAULT '';
ALTER TABLE keygate_keys ADD COLUMN replaced_by TEXT NOT NULL DEFAULT '';
-- The networks a key may be used from, comma-separated CIDRs ('' for any).
ALTER TABLE keygate_keys ADD COLUMN allow_cidrs TEXT NOT NULL DEFAULT '';
ALTER TABLE keygate_keys ADD COLUMN not_before INTEGER; -- Unix microseconds
ALTER TABLE keygate_keys ADD COLUMN limits TEXT NOT NULL DEFAULT '';

CREATE TABLE keygate_counters (
    subject      TEXT    NOT NULL,
    period_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (subject, period_start)
) STRICT;

CREATE TABLE keygate_owners (
    owner  TEXT PRIMARY KEY,
    limits TEXT NOT NULL
) STRICT;
