-- Pepper rotation. Each key records the pepper its digest was made with
-- (the first 8 bytes of the pepper's check value, hex), and
-- keygate_peppers registers every pepper processes on this store have
-- used, in order: the last registered is the newest. A gateway re-hashes
-- a key made with an older pepper to the newest on its first successful
-- use; pepper-status counts the keys still on each pepper.
ALTER TABLE keygate_keys ADD COLUMN pepper_id text;

UPDATE keygate_keys SET pepper_id = (
    SELECT encode(substring(value from 1 for 8), 'hex') FROM keygate_meta
    WHERE name = 'pepper_check' AND octet_length(value) = 32);

CREATE TABLE keygate_peppers (
    id            text        PRIMARY KEY,
    check_value   bytea       NOT NULL UNIQUE CHECK (octet_length(check_value) = 32),
    seq           bigint      NOT NULL UNIQUE,
    registered_at timestamptz NOT NULL
);

INSERT INTO keygate_peppers (id, check_value, seq, registered_at)
SELECT encode(substring(value from 1 for 8), 'hex'), value, 1, now() FROM keygate_meta
WHERE name = 'pepper_check' AND octet_length(value) = 32;

-- A gateway's runtime role may update a key's digest and pepper_id, and
-- nothing else of it, to re-hash it; this trigger keeps that to what a
-- re-hash is: from an older pepper to the newest registered one. Outside
-- a rotation (every key on the newest pepper) no digest can change at
-- all. keygate_peppers is named with the trigger's own schema, so that no
-- table another role creates on the search path is read instead.
CREATE FUNCTION keygate_keys_rehash_only() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    newest text;
BEGIN
    IF NEW.digest = OLD.digest AND NEW.pepper_id IS NOT DISTINCT FROM OLD.pepper_id THEN
        RETURN NEW;
    END IF;
    EXECUTE pg_catalog.format('SELECT id FROM %I.keygate_peppers ORDER BY seq DESC LIMIT 1', TG_TABLE_SCHEMA) INTO newest;
    IF newest IS NULL OR NEW.pepper_id IS DISTINCT FROM newest OR OLD.pepper_id IS NOT DISTINCT FROM newest
       OR NEW.digest = OLD.digest THEN
        RAISE EXCEPTION 'keygate_keys: a key''s digest changes only when it is re-hashed from an older pepper to the newest registered one (%)', newest
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER keygate_keys_rehash_only
    BEFORE UPDATE OF digest, pepper_id ON keygate_keys
    FOR EACH ROW EXECUTE FUNCTION keygate_keys_rehash_only();
