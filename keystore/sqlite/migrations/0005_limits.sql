-- A key's own limits (JSON: rate, burst, quota, uses, refill; '' for
-- none), and the counters quotas and uses are enforced against, shared by
-- every gateway: one row per subject ("quota:<key id>", "uses:<key id>")
-- and period, period_start in Unix seconds (0: the key's whole life).
ALTER TABLE keygate_keys ADD COLUMN limits TEXT NOT NULL DEFAULT '';

CREATE TABLE keygate_counters (
    subject      TEXT    NOT NULL,
    period_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (subject, period_start)
) STRICT;
