-- When a key starts to work (NULL: at once); a key's own limits (JSON: rate, burst, quota, uses, refill; '' for
-- none), the limits an owner's keys share (rate, burst, quota), and the
-- counters quotas and uses are enforced against, shared by
-- every gateway: one row per subject ("quota:<key id>", "uses:<key id>",
-- "owner_quota:<owner>")
-- and period, period_start in Unix seconds (0: the key's whole life).
-- Rotation links: the key a key replaced, and the key that replaced it
-- ('' for none).
ALTER TABLE keygate_keys ADD COLUMN replaces text NOT NULL DEFAULT '';
ALTER TABLE keygate_keys ADD COLUMN replaced_by text NOT NULL DEFAULT '';
-- The networks a key may be used from, comma-separated CIDRs ('' for any).
ALTER TABLE keygate_keys ADD COLUMN allow_cidrs text NOT NULL DEFAULT '';
ALTER TABLE keygate_keys ADD COLUMN not_before timestamptz;
ALTER TABLE keygate_keys ADD COLUMN limits text NOT NULL DEFAULT '';

CREATE TABLE keygate_counters (
    subject      text   NOT NULL,
    period_start bigint NOT NULL,
    count        bigint NOT NULL,
    PRIMARY KEY (subject, period_start)
);

CREATE TABLE keygate_owners (
    owner  text PRIMARY KEY,
    limits text NOT NULL
);
