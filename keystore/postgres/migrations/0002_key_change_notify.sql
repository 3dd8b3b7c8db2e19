-- Tell every gateway sharing the database when a key changes, so that it
-- drops the key from its cache at once. The payload is the hex digest of
-- the key (old and new, should a digest ever change). NOTIFY is sent on
-- commit and never for a rolled-back change.
CREATE FUNCTION keygate_notify_key_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('keygate_keys', encode(OLD.digest, 'hex'));
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.digest <> OLD.digest) THEN
        PERFORM pg_notify('keygate_keys', encode(NEW.digest, 'hex'));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER keygate_keys_notify
    AFTER INSERT OR UPDATE OR DELETE ON keygate_keys
    FOR EACH ROW EXECUTE FUNCTION keygate_notify_key_change();
