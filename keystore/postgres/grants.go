package postgres

import (
	"fmt"
	"regexp"
	"strings"
)

// Roles are the database roles of a least-privilege deployment: Owner
// owns the tables and runs migrations (empty: whoever ran them, which
// keeps them), Management is the CLI's and the admin API's, Runtime a
// gateway's.
type Roles struct {
	Runtime, Management, Owner string
}

// DefaultRoles are the roles Grants uses when none are named.
var DefaultRoles = Roles{Runtime: "keygate_gateway", Management: "keygate_manage"}

// tableGrant is what a role may do to one table.
type tableGrant struct {
	table      string
	privileges string
}

// runtimeGrants is what a gateway does: read keys, owners' limits, the
// registry in keygate_meta, the registered peppers, the schema version,
// signing keys and the audit chain's head; add usage, last uses and
// request counters, and prune old ones; re-hash a key to the newest
// pepper in a pepper rotation (its digest and pepper_id only, and the
// keygate_keys_rehash_only trigger refuses any other change of them). It
// may not otherwise change a key, an owner, the audit trail, a
// signing key or keygate_meta: recording a key prefix or the first
// signing key is the management role's.
var runtimeGrants = []tableGrant{
	{"keygate_schema_migrations", "SELECT"},
	{"keygate_keys", "SELECT, UPDATE (digest, pepper_id)"},
	{"keygate_peppers", "SELECT"},
	{"keygate_owners", "SELECT"},
	{"keygate_meta", "SELECT"},
	{"keygate_signing_keys", "SELECT"},
	{"keygate_audit", "SELECT"},
	{"keygate_usage", "SELECT, INSERT, UPDATE, DELETE"},
	{"keygate_usage_batches", "SELECT, INSERT, UPDATE, DELETE"},
	{"keygate_counters", "SELECT, INSERT, UPDATE, DELETE"},
	{"keygate_last_used", "SELECT, INSERT, UPDATE"},
}

// managementGrants is what the CLI and the admin API do beyond a
// gateway: change keys and owners' limits, append to the audit trail
// (UPDATE only because LOCK TABLE keygate_audit IN SHARE ROW EXCLUSIVE
// MODE requires it; the append-only trigger refuses every UPDATE and
// DELETE of a row), create and rotate signing keys, and record the pepper
// check and key prefixes in keygate_meta (DELETE for reset-pepper).
var managementGrants = []tableGrant{
	{"keygate_keys", "INSERT, UPDATE, DELETE"},
	{"keygate_owners", "INSERT, UPDATE, DELETE"},
	{"keygate_audit", "INSERT, UPDATE"},
	{"keygate_signing_keys", "INSERT, UPDATE"},
	{"keygate_meta", "INSERT, UPDATE, DELETE"},
	{"keygate_peppers", "INSERT, DELETE"},
}

// ownedTables are the tables and functions the owner role owns.
var ownedTables = []string{
	"keygate_schema_migrations", "keygate_keys", "keygate_meta", "keygate_audit", "keygate_usage",
	"keygate_usage_batches", "keygate_last_used", "keygate_counters", "keygate_owners", "keygate_signing_keys",
	"keygate_peppers",
}

var ownedFunctions = []string{"keygate_notify_key_change()", "keygate_audit_append_only()", "keygate_keys_rehash_only()"}

// roleName is what Grants accepts as a role name: a plain lower-case
// identifier, which needs no quoting as an identifier or in a literal.
var roleName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Grants returns the SQL that creates the roles r names if they do not
// exist (without LOGIN: give them passwords, or grant them to login
// roles) and grants each what its part of Keygate does, and no more. It
// runs nothing. Run it after the owner has migrated the schema, as the
// owner or a superuser, and again after each upgrade whose migrations add
// tables.
func Grants(r Roles) (string, error) {
	if r.Runtime == "" {
		r.Runtime = DefaultRoles.Runtime
	}
	if r.Management == "" {
		r.Management = DefaultRoles.Management
	}
	names := []string{r.Runtime, r.Management}
	if r.Owner != "" {
		names = append(names, r.Owner)
	}
	for _, n := range names {
		if !roleName.MatchString(n) {
			return "", fmt.Errorf("role name %q: use lower-case letters, digits and _ (at most 63, not starting with a digit)", n)
		}
	}
	if r.Runtime == r.Management || r.Runtime == r.Owner || r.Management == r.Owner {
		return "", fmt.Errorf("the runtime, management and owner roles must differ")
	}
	var b strings.Builder
	b.WriteString("-- Keygate database roles: run as the owner of the keygate_* tables (or a\n" +
		"-- superuser) after `caddy api-key migrate`, and again after each upgrade.\n")
	b.WriteString("BEGIN;\n\n")
	for _, n := range names {
		fmt.Fprintf(&b, "DO $$\nBEGIN\n    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '%s') THEN\n        CREATE ROLE %s NOLOGIN;\n    END IF;\nEND\n$$;\n", n, n)
	}
	if r.Owner != "" {
		b.WriteString("\n-- The owner runs migrations.\n")
		for _, t := range ownedTables {
			fmt.Fprintf(&b, "ALTER TABLE %s OWNER TO %s;\n", t, r.Owner)
		}
		for _, f := range ownedFunctions {
			fmt.Fprintf(&b, "ALTER FUNCTION %s OWNER TO %s;\n", f, r.Owner)
		}
		// Later migrations create tables and functions: the owner needs
		// CREATE on the schema (PostgreSQL 15 no longer grants it on
		// public to every role).
		fmt.Fprintf(&b, "DO $$\nBEGIN\n    EXECUTE pg_catalog.format('GRANT USAGE, CREATE ON SCHEMA %%I TO %s', pg_catalog.current_schema());\nEND\n$$;\n", r.Owner)
	}
	// The schema the tables are in, whichever the search_path found.
	fmt.Fprintf(&b, "\nDO $$\nBEGIN\n    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %%I TO %s, %s', pg_catalog.current_schema());\nEND\n$$;\n",
		r.Runtime, r.Management)
	b.WriteString("\n-- Start from nothing, so that running this again also takes back what\n-- an older version granted.\n")
	for _, t := range ownedTables {
		fmt.Fprintf(&b, "REVOKE ALL ON %s FROM %s, %s;\n", t, r.Runtime, r.Management)
	}
	b.WriteString("\n-- Runtime (gateways). LISTEN needs no grant.\n")
	for _, g := range runtimeGrants {
		fmt.Fprintf(&b, "GRANT %s ON %s TO %s;\n", g.privileges, g.table, r.Runtime)
	}
	b.WriteString("\n-- Management (CLI, admin API): everything a gateway may do, and more.\n")
	for _, g := range runtimeGrants {
		fmt.Fprintf(&b, "GRANT %s ON %s TO %s;\n", g.privileges, g.table, r.Management)
	}
	for _, g := range managementGrants {
		fmt.Fprintf(&b, "GRANT %s ON %s TO %s;\n", g.privileges, g.table, r.Management)
	}
	b.WriteString("\nCOMMIT;\n")
	return b.String(), nil
}
