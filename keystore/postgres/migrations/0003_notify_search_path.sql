-- Run the key change trigger with a fixed search_path and name what it
-- calls in full, so that no function or operator another role creates in
-- a schema on the session's search_path (a pg_notify of its own, say) is
-- ever called in place of PostgreSQL's. The body is that of 0002.
CREATE OR REPLACE FUNCTION keygate_notify_key_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_catalog.pg_notify('keygate_keys', pg_catalog.encode(OLD.digest, 'hex'));
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.digest <> OLD.digest) THEN
        PERFORM pg_catalog.pg_notify('keygate_keys', pg_catalog.encode(NEW.digest, 'hex'));
    END IF;
    RETURN NULL;
END
$$;
