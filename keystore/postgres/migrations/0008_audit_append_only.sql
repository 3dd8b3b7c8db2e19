-- The audit trail is append only: no role but the table's owner (the one
-- that runs migrations) may change or remove a row, even a role granted
-- UPDATE on the table (the management role has it, because LOCK TABLE
-- ... IN SHARE ROW EXCLUSIVE MODE, which serialises appenders, requires
-- it). The owner is exempt because it could drop the trigger anyway;
-- repairing the trail is then a deliberate act of the owner, never a
-- gateway's or the CLI's. The hash chain still tells any change made by
-- whoever gets past this.
CREATE FUNCTION keygate_audit_append_only() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_user <> (SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID) THEN
        RAISE EXCEPTION 'keygate_audit is append only: % refused for role %', TG_OP, current_user
            USING ERRCODE = '42501',
                  HINT = 'Only the owner of keygate_audit may change or remove audit events.';
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER keygate_audit_append_only
    BEFORE UPDATE OR DELETE ON keygate_audit
    FOR EACH ROW EXECUTE FUNCTION keygate_audit_append_only();

CREATE TRIGGER keygate_audit_no_truncate
    BEFORE TRUNCATE ON keygate_audit
    FOR EACH STATEMENT EXECUTE FUNCTION keygate_audit_append_only();
