package postgres

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

// grantRoles creates the runtime and management roles of Grants in dsn's
// database (names unique to the test: roles are the cluster's), lets them
// log in, and drops them when the test ends. It returns their DSNs.
func grantRoles(t *testing.T, dsn string) (runtimeDSN, managementDSN string) {
	t.Helper()
	r := applyGrants(t, dsn, false)
	return asRole(t, dsn, r.Runtime), asRole(t, dsn, r.Management)
}

// applyGrants creates roles of their own for a test (and an owner role
// with withOwner), applies Grants' SQL as the superuser of dsn, lets the
// roles log in and drops them when the test ends.
func applyGrants(t *testing.T, dsn string, withOwner bool) Roles {
	t.Helper()
	ctx := storetest.Context(t)
	suffix := make([]byte, 4)
	rand.Read(suffix)
	r := Roles{Runtime: "kg_runtime_" + hex.EncodeToString(suffix), Management: "kg_manage_" + hex.EncodeToString(suffix)}
	roles := []string{r.Runtime, r.Management}
	if withOwner {
		r.Owner = "kg_owner_" + hex.EncodeToString(suffix)
		roles = append(roles, r.Owner)
	}
	sql, err := Grants(r)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close(ctx)
	if _, err := owner.Exec(ctx, sql); err != nil {
		t.Fatalf("applying the grants: %v\n%s", err, sql)
	}
	t.Cleanup(func() {
		ctx := storetest.Context(t)
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("dropping roles: %v", err)
			return
		}
		defer conn.Close(ctx)
		// The database goes with the test; its objects (owned by the
		// owner role) first, so that the roles can be dropped.
		qs := []string{"DROP OWNED BY " + strings.Join(roles, ", ") + " CASCADE"}
		for _, role := range roles {
			qs = append(qs, "DROP ROLE "+role)
		}
		for _, q := range qs {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	for _, role := range roles {
		if _, err := owner.Exec(ctx, "ALTER ROLE "+role+" LOGIN"); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// TestGrantsWithOwnerRole: --owner-role hands the tables and functions
// to the owner role, which can then run migrations (create, alter) and,
// alone, repair the audit trail; the other roles keep their grants.
func TestGrantsWithOwnerRole(t *testing.T) {
	ctx := storetest.Context(t)
	dsn := pgtest.NewDatabase(t)
	check := keystore.Options{PepperCheck: storetest.Hasher(t).PepperCheck()}
	s := storetest.Open(t, dsn, check)
	if _, _, err := testkeys.Issue(ctx, s, storetest.Format(t, ""), storetest.Hasher(t), keystore.NewKeyParams{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r := applyGrants(t, dsn, true)
	ownerDSN := asRole(t, dsn, r.Owner)
	var tables int
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'keygate\\_%' AND tableowner <> $1", r.Owner).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("%d keygate tables not owned by the owner role (%v)", tables, err)
	}
	// The owner migrates: the store opens and migrates as the owner, and
	// a later migration's DDL (a new table, a new column) is allowed.
	storetest.Open(t, ownerDSN, check).Close()
	for _, q := range []string{
		"CREATE TABLE keygate_probe (a int)",
		"ALTER TABLE keygate_keys ADD COLUMN probe int",
		"UPDATE keygate_audit SET actor = actor",
	} {
		if err := execAs(t, ownerDSN, q); err != nil {
			t.Errorf("owner role: %s: %v", q, err)
		}
	}
	if err := execAs(t, asRole(t, dsn, r.Management), "UPDATE keygate_audit SET actor = actor"); !keystore.PermissionDenied(err) {
		t.Errorf("management role changed the audit trail with an owner role set: %v", err)
	}
	rt, err := keystore.Open(ctx, asRole(t, dsn, r.Runtime), check)
	if err != nil {
		t.Fatalf("runtime role with an owner role set: %v", err)
	}
	rt.Close()
}

// asRole returns dsn with user role (the test cluster trusts 127.0.0.1).
func asRole(t *testing.T, dsn, role string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

// execAs runs q as the role of dsn and returns its error.
func execAs(t *testing.T, dsn, q string) error {
	t.Helper()
	ctx := storetest.Context(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, q)
	return err
}

// TestLeastPrivilegeRoles: with the grants of `migrate --print-grants`, a
// gateway's runtime role opens the migrated store and does all a gateway
// does (look keys up, hear of changes, write usage and counters) and
// nothing more; the management role changes keys but, like every role
// but the owner, cannot change or remove an audit event.
func TestLeastPrivilegeRoles(t *testing.T) {
	ctx := storetest.Context(t)
	dsn := pgtest.NewDatabase(t)
	check := keystore.Options{PepperCheck: storetest.Hasher(t).PepperCheck()}
	storetest.Open(t, dsn, check) // the owner migrates and records the pepper check
	runtimeDSN, managementDSN := grantRoles(t, dsn)

	mgmt := storetest.Open(t, managementDSN, keystore.Options{PepperCheck: check.PepperCheck, Schema: keystore.SchemaRequire})
	rt := storetest.Open(t, runtimeDSN, check) // as a gateway opens it
	watch := storetest.StartWatch(t, rt)
	watch.WaitFor(t, "the watch to start", func(r *storetest.Recorder) bool { return r.Up })

	_, rec, err := testkeys.Issue(ctx, mgmt, storetest.Format(t, ""), storetest.Hasher(t), keystore.NewKeyParams{Name: "k"})
	if err != nil {
		t.Fatalf("the management role cannot create a key: %v", err)
	}
	if k, err := rt.Lookup(ctx, rec.Digest); err != nil || k.ID != rec.ID {
		t.Fatalf("Lookup as the runtime role: %v, %v", k, err)
	}
	minute := time.Now().UTC().Truncate(time.Minute)
	batch := &keystore.UsageBatch{ID: [16]byte{1}, Rows: []keystore.UsageRow{{KeyID: rec.ID, Minute: minute}},
		LastUsed: map[string]time.Time{rec.ID: time.Now()}}
	batch.Rows[0].Status[2] = 3
	if _, err := rt.WriteUsage(ctx, batch); err != nil {
		t.Fatalf("WriteUsage as the runtime role: %v", err)
	}
	counts := &keystore.CountBatch{ID: [16]byte{2}, Deltas: []keystore.CountDelta{{Subject: "uses:" + rec.ID, N: 2}}}
	if _, err := rt.AddCounts(ctx, counts); err != nil {
		t.Fatalf("AddCounts as the runtime role: %v", err)
	}
	if n, err := rt.Count(ctx, "uses:"+rec.ID, time.Time{}); err != nil || n != 2 {
		t.Fatalf("Count as the runtime role: %d, %v", n, err)
	}
	if _, err := rt.PruneUsage(ctx, minute.Add(-time.Hour), time.Now().Add(-time.Hour)); err != nil {
		t.Fatalf("PruneUsage as the runtime role: %v", err)
	}
	if _, err := rt.Head(ctx); err != nil {
		t.Fatalf("Head as the runtime role: %v", err)
	}
	if _, _, err := testkeys.Revoke(ctx, mgmt, rec.ID); err != nil {
		t.Fatalf("the management role cannot revoke a key: %v", err)
	}
	watch.WaitFor(t, "the revocation to reach the runtime role's watch", func(r *storetest.Recorder) bool { return r.Saw(rec.Digest) })

	// What the runtime role may not do, through the store and directly.
	if _, _, err := testkeys.Issue(ctx, rt, storetest.Format(t, ""), storetest.Hasher(t), keystore.NewKeyParams{Name: "no"}); !keystore.PermissionDenied(err) {
		t.Errorf("the runtime role created a key: %v", err)
	}
	if err := rt.AcceptPrefix(ctx, "kg"); !keystore.PermissionDenied(err) {
		t.Errorf("the runtime role recorded a prefix: %v", err)
	}
	first := &keystore.SigningKey{KID: "kid", Algorithm: "EdDSA", PublicKey: []byte{1}, SealedPrivateKey: []byte{2},
		CreatedAt: time.Now(), ActivatedAt: time.Now()}
	if _, err := rt.EnsureSigningKey(ctx, first, nil); !keystore.PermissionDenied(err) {
		t.Errorf("the runtime role created the first signing key: %v", err)
	}
	refused := []string{
		"INSERT INTO keygate_keys (id, digest, name, hint, created_at) VALUES ('x', '\\x" + strings.Repeat("00", 32) + "', 'x', 'x', now())",
		"UPDATE keygate_keys SET revoked_at = NULL",
		"DELETE FROM keygate_keys",
		"INSERT INTO keygate_audit (seq, at, actor, action, prev, hash) SELECT max(seq) + 1, now(), 'x', 'x', prev, hash FROM keygate_audit GROUP BY prev, hash LIMIT 1",
		"UPDATE keygate_audit SET actor = 'x'",
		"DELETE FROM keygate_audit",
		"INSERT INTO keygate_owners (owner, limits) VALUES ('o', '')",
		"UPDATE keygate_signing_keys SET retires_at = now()",
		"UPDATE keygate_meta SET value = value",
		"CREATE TABLE keygate_x (a int)",
		// Re-hashing is only ever from an older pepper to the newest
		// registered; outside a rotation no digest may change.
		"UPDATE keygate_keys SET digest = '\\x" + strings.Repeat("01", 32) + "'",
		"UPDATE keygate_keys SET pepper_id = 'x'",
		"INSERT INTO keygate_peppers (id, check_value, seq, registered_at) VALUES ('x', '\\x" + strings.Repeat("02", 32) + "', 99, now())",
		"DELETE FROM keygate_peppers",
	}
	for _, q := range refused {
		if err := execAs(t, runtimeDSN, q); !keystore.PermissionDenied(err) {
			t.Errorf("runtime role: %s: %v, want permission denied", q, err)
		}
	}
	// Not even the management role may change or remove audit events.
	for _, q := range []string{"UPDATE keygate_audit SET actor = 'x'", "DELETE FROM keygate_audit", "TRUNCATE keygate_audit"} {
		if err := execAs(t, managementDSN, q); !keystore.PermissionDenied(err) {
			t.Errorf("management role: %s: %v, want refused", q, err)
		}
	}
	if err := execAs(t, managementDSN, "UPDATE keygate_keys SET name = 'renamed' WHERE id = '"+rec.ID+"'"); err != nil {
		t.Errorf("the management role cannot change a key: %v", err)
	}

	// A pepper rotation: the management role registers the new pepper;
	// the runtime role re-hashes a key to it, and to nothing else.
	rotation, err := keystore.NewPeppers([]byte("8c1e4a7f2d9b03e65a7c1d4f8b2e0a9c3d6f1b5e7a2c4d8f0b3e6a9c1d5f7b2e"), [][]byte{storetest.TestPepper}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rotOpts keystore.Options
	rotation.SetOptions(&rotOpts)
	rotOpts.Schema = keystore.SchemaRequire
	storetest.Open(t, managementDSN, rotOpts).Close()
	key2, rec2, err := testkeys.Issue(ctx, mgmt, storetest.Format(t, ""), storetest.Hasher(t), keystore.NewKeyParams{Name: "k2"})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := storetest.Format(t, "").Parse(key2)
	if err != nil {
		t.Fatal(err)
	}
	to := rotation.Current.Digest(parsed)
	if moved, err := rt.Rehash(ctx, rec2.ID, rec2.Digest, to, rotation.Current.ID()); err != nil || !moved {
		t.Fatalf("the runtime role cannot re-hash a key to the newest pepper: %v, %v", moved, err)
	}
	watch.WaitFor(t, "the re-hash to reach the runtime role's watch", func(r *storetest.Recorder) bool { return r.Saw(to) })
	if err := execAs(t, runtimeDSN, "UPDATE keygate_keys SET digest = '\\x"+strings.Repeat("03", 32)+"' WHERE id = '"+rec2.ID+"'"); !keystore.PermissionDenied(err) {
		t.Errorf("the runtime role changed a re-hashed key's digest again: %v, want refused", err)
	}
	if err := execAs(t, runtimeDSN, "UPDATE keygate_keys SET digest = '\\x"+strings.Repeat("04", 32)+"', pepper_id = '"+storetest.Hasher(t).ID()+"' WHERE id = '"+rec2.ID+"'"); !keystore.PermissionDenied(err) {
		t.Errorf("the runtime role moved a key back to an older pepper: %v, want refused", err)
	}

	// A wrong pepper is still told from the recorded check, read only.
	wrong, err := keystore.NewHasher([]byte("3f9a61c2d84be07c55e913a0b6d2f48e1c7a09b53de86f2041ab97c3e56d8f20"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.Open(ctx, runtimeDSN, keystore.Options{PepperCheck: wrong.PepperCheck()}); !errors.Is(err, keystore.ErrPepperMismatch) {
		t.Errorf("runtime role with a wrong pepper: %v, want ErrPepperMismatch", err)
	}
	// Without a recorded check the runtime role cannot verify the pepper:
	// it refuses to start.
	if err := execAs(t, dsn, "DELETE FROM keygate_meta WHERE name = 'pepper_check'"); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.Open(ctx, runtimeDSN, check); !errors.Is(err, keystore.ErrCannotRecordPepperCheck) {
		t.Errorf("runtime role without a recorded pepper check: %v, want ErrCannotRecordPepperCheck", err)
	}
	// Nor can it migrate a schema older than the build.
	if err := execAs(t, dsn, "DELETE FROM keygate_schema_migrations WHERE version = (SELECT max(version) FROM keygate_schema_migrations)"); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.Open(ctx, runtimeDSN, check); !errors.Is(err, keystore.ErrCannotMigrate) {
		t.Errorf("runtime role on an old schema: %v, want ErrCannotMigrate", err)
	}
}
