package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
)

// storeKind is one Store implementation under the conformance suite: the
// same tests run unchanged against every kind.
type storeKind struct {
	name string
	// newDSN returns the DSN of a fresh, empty store.
	newDSN func(t *testing.T) string
	// dump returns everything the store holds, as text, for the
	// "no key material at rest" check.
	dump func(t *testing.T, dsn string) string
	// exec runs SQL on the store behind Keygate's back, as someone with
	// access to the database would.
	exec func(t *testing.T, dsn, sql string)
}

var storeKinds = []storeKind{
	{
		name:   "sqlite",
		newDSN: func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "keys.db") },
		dump: func(t *testing.T, dsn string) string {
			// The raw file, WAL included: what a stolen disk would show.
			var all []byte
			for _, suffix := range []string{"", "-wal"} {
				b, err := os.ReadFile(SQLitePath(dsn) + suffix)
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				all = append(all, b...)
			}
			return string(all)
		},
		exec: func(t *testing.T, dsn, query string) {
			db, err := sql.Open("sqlite", SQLitePath(dsn))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(query); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
		},
	},
	{
		name:   "postgres",
		newDSN: func(t *testing.T) string { return pgtest.NewDatabase(t) },
		dump: func(t *testing.T, dsn string) string {
			out, err := exec.Command("pg_dump", "--data-only", dsn).CombinedOutput()
			if err != nil {
				t.Fatalf("pg_dump: %v\n%s", err, out)
			}
			return string(out)
		},
		exec: func(t *testing.T, dsn, query string) {
			ctx := ctxT(t)
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, query); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
		},
	},
}

func forEachStore(t *testing.T, test func(t *testing.T, k storeKind)) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			test(t, kind)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openT(t *testing.T, dsn string, opts Options) Store {
	t.Helper()
	s, err := Open(ctxT(t), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func testHasher(t testing.TB) *Hasher {
	h, err := NewHasher(testPepper)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestStoreIssueLookupGet(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		h := testHasher(t)
		s := openT(t, kind.newDSN(t), Options{PepperCheck: h.PepperCheck()})
		f := mustFormat(t, "kg")
		exp := time.Now().Add(time.Hour)
		key, rec, err := issueKey(ctx, s, f, h, NewKeyParams{
			Name:      "billing sync",
			Owner:     "acme",
			Scopes:    []string{"write:orders", "read:orders", "read:orders"},
			Metadata:  map[string]string{"env": "prod", "ticket": "OPS-1"},
			ExpiresAt: exp,
		})
		if err != nil {
			t.Fatal(err)
		}
		p, err := f.Parse(key)
		if err != nil {
			t.Fatal(err)
		}
		if rec.ID != p.ID || rec.Hint != Hint(p) {
			t.Fatalf("record id/hint %q/%q do not match the key", rec.ID, rec.Hint)
		}
		if !reflect.DeepEqual(rec.Scopes, []string{"read:orders", "write:orders"}) {
			t.Fatalf("scopes not normalised: %v", rec.Scopes)
		}
		got, err := s.Lookup(ctx, h.Digest(p))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Fatalf("Lookup returned\n%+v\nwant\n%+v", got, rec)
		}
		byID, err := s.Get(ctx, rec.ID)
		if err != nil || !reflect.DeepEqual(byID, rec) {
			t.Fatalf("Get: %v\n%+v", err, byID)
		}
		if got.Status(time.Now()) != StatusActive || got.Status(exp.Add(time.Second)) != StatusExpired {
			t.Fatal("status does not follow expiry")
		}
		if !got.HasScopes([]string{"read:orders"}) || got.HasScopes([]string{"admin"}) {
			t.Fatal("HasScopes is wrong")
		}
	})
}

func TestStoreNotFoundAndDuplicate(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		h := testHasher(t)
		s := openT(t, kind.newDSN(t), Options{})
		if _, err := s.Lookup(ctx, Digest{1}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Lookup of unknown digest: %v", err)
		}
		if _, err := s.Get(ctx, "AAAAAAAAAAAA"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of unknown id: %v", err)
		}
		if _, _, err := revokeAt(ctx, s, "AAAAAAAAAAAA", time.Now()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Revoke of unknown id: %v", err)
		}
		_, rec, err := issueKey(ctx, s, mustFormat(t, ""), h, NewKeyParams{Name: "a"})
		if err != nil {
			t.Fatal(err)
		}
		dupID := *rec
		dupID.Digest = Digest{9}
		if err := insertKey(ctx, s, &dupID); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("Insert with a taken id: %v", err)
		}
		dupDigest := *rec
		dupDigest.ID = "BBBBBBBBBBBB"
		if err := insertKey(ctx, s, &dupDigest); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("Insert with a taken digest: %v", err)
		}
	})
}

func TestStoreRevoke(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		h := testHasher(t)
		s := openT(t, kind.newDSN(t), Options{})
		_, rec, err := issueKey(ctx, s, mustFormat(t, ""), h, NewKeyParams{Name: "a"})
		if err != nil {
			t.Fatal(err)
		}
		at := time.Now().UTC().Truncate(time.Microsecond)
		k, changed, err := revokeAt(ctx, s, rec.ID, at)
		if err != nil || !changed || !k.RevokedAt.Equal(at) || k.Status(time.Now()) != StatusRevoked {
			t.Fatalf("Revoke: %v changed=%v %+v", err, changed, k)
		}
		k, changed, err = revokeAt(ctx, s, rec.ID, at.Add(time.Hour))
		if err != nil || changed || !k.RevokedAt.Equal(at) {
			t.Fatalf("second Revoke: %v changed=%v revoked_at=%v", err, changed, k.RevokedAt)
		}
		got, err := s.Lookup(ctx, rec.Digest)
		if err != nil || got.Status(time.Now()) != StatusRevoked {
			t.Fatalf("Lookup after revoke: %v %+v", err, got)
		}
	})
}

func TestStoreList(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		h := testHasher(t)
		s := openT(t, kind.newDSN(t), Options{})
		f := mustFormat(t, "")
		var ids []string
		for i, owner := range []string{"acme", "globex", "acme", "acme"} {
			_, rec, err := issueKey(ctx, s, f, h, NewKeyParams{Name: fmt.Sprint("k", i), Owner: owner, ExpiresAt: time.Now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, rec.ID)
		}
		if _, _, err := revokeAt(ctx, s, ids[2], time.Now()); err != nil {
			t.Fatal(err)
		}
		idsOf := func(keys []*Key) []string {
			var out []string
			for _, k := range keys {
				out = append(out, k.ID)
			}
			return out
		}
		check := func(f ListFilter, want ...string) {
			t.Helper()
			keys, err := s.List(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if got := idsOf(keys); !reflect.DeepEqual(got, want) {
				t.Fatalf("List(%+v) = %v, want %v", f, got, want)
			}
		}
		check(ListFilter{}, ids[0], ids[1], ids[3])
		check(ListFilter{Owner: "acme"}, ids[0], ids[3])
		check(ListFilter{Owner: "acme", IncludeInactive: true}, ids[0], ids[2], ids[3])
		check(ListFilter{IncludeInactive: true, Limit: 2}, ids[0], ids[1])
		check(ListFilter{Now: time.Now().Add(2 * time.Hour)})
		check(ListFilter{Owner: "nobody"})
	})
}

func TestStoreMigrations(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		dsn := kind.newDSN(t)
		all, err := loadMigrations(map[string]string{"sqlite": "sqlite", "postgres": "postgres"}[kind.name])
		if err != nil {
			t.Fatal(err)
		}
		// Several processes starting at once must not trip over each other.
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := Open(ctx, dsn, Options{})
				if err != nil {
					errs <- err
					return
				}
				s.Close()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent Open: %v", err)
		}
		s := openT(t, dsn, Options{})
		if v, err := s.SchemaVersion(ctx); err != nil || v != len(all) {
			t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(all))
		}
		if applied, err := s.Migrate(ctx); err != nil || len(applied) != 0 {
			t.Fatalf("second Migrate applied %v, %v", applied, err)
		}
		// A database migrated by a newer Keygate is refused, not used.
		s.Close()
		bumpSchema(t, kind.name, dsn, len(all)+1)
		if _, err := Open(ctx, dsn, Options{}); !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("Open of a newer schema: %v", err)
		}
	})
}

func bumpSchema(t *testing.T, kind, dsn string, version int) {
	t.Helper()
	applied := "0" // SQLite keeps Unix microseconds
	if kind == "postgres" {
		applied = "now()"
	}
	rawExec(t, kind, dsn, fmt.Sprintf("INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES (%d, 'future', %s)", version, applied))
}

func TestStorePepperCheck(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		dsn := kind.newDSN(t)
		h := testHasher(t)
		openT(t, dsn, Options{PepperCheck: h.PepperCheck()}).Close()
		// Without a pepper (list, show, revoke) the store opens.
		openT(t, dsn, Options{}).Close()
		other, err := NewHasher(otherPepper)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(ctxT(t), dsn, Options{PepperCheck: other.PepperCheck()}); !errors.Is(err, ErrPepperMismatch) {
			t.Fatalf("Open with another pepper: %v", err)
		}
		openT(t, dsn, Options{PepperCheck: h.PepperCheck()})
	})
}

// TestStorePepperCheckCorrupt: a pepper check row that is not a digest
// (damaged by hand or by a tool) makes the store unusable with an error
// that says so, on both backends and at once, never a panic and never
// "wrong pepper".
func TestStorePepperCheckCorrupt(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		dsn := kind.newDSN(t)
		h := testHasher(t)
		openT(t, dsn, Options{PepperCheck: h.PepperCheck()}).Close()
		rawExec(t, kind.name, dsn, "UPDATE keygate_meta SET value = "+
			map[string]string{"sqlite": "x'01'", "postgres": `'\x01'`}[kind.name]+" WHERE name = 'pepper_check'")
		_, err := Open(ctxT(t), dsn, Options{PepperCheck: h.PepperCheck()})
		if !errors.Is(err, ErrPepperCheckCorrupt) || errors.Is(err, ErrPepperMismatch) {
			t.Fatalf("Open with a corrupt pepper check row: %v", err)
		}
		want := "the pepper check value stored in keygate_meta is corrupt (1 bytes, want 32)"
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not contain %q", err, want)
		}
		if !pgPermanent(err) {
			t.Fatal("a corrupt pepper check row is not a permanent error")
		}
	})
}

// rawExec runs q on the store's database directly, as an operator (or an
// attacker with write access) would.
func rawExec(t *testing.T, kind, dsn, q string) {
	t.Helper()
	ctx := ctxT(t)
	if kind == "postgres" {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
		return
	}
	s, err := openSQLite(ctx, SQLitePath(dsn), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.db.ExecContext(ctx, q); err != nil {
		t.Fatal(err)
	}
}

// TestStoreHoldsNoKeyMaterial dumps the whole store and looks for the
// keys, their secrets and the pepper.
func TestStoreHoldsNoKeyMaterial(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		h := testHasher(t)
		dsn := kind.newDSN(t)
		s := openT(t, dsn, Options{PepperCheck: h.PepperCheck()})
		f := mustFormat(t, "")
		var keys []string
		for i := 0; i < 5; i++ {
			key, rec, err := issueKey(ctx, s, f, h, NewKeyParams{Name: "k"})
			if err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				if _, changed, err := revokeAt(ctx, s, rec.ID, time.Now()); err != nil || !changed {
					t.Fatalf("revoking %s: changed %v, %v", rec.ID, changed, err)
				}
			}
			keys = append(keys, key)
		}
		s.Close()
		dump := kind.dump(t, dsn)
		if !strings.Contains(dump, keys[0][3:3+IDLen]) {
			t.Fatal("dump does not contain a key id; the dump is not working")
		}
		for _, key := range keys {
			secret := key[3+IDLen+1 : len(key)-checksumLen]
			for _, needle := range []string{key, secret, secret[:16], secret[len(secret)-16:]} {
				if strings.Contains(dump, needle) {
					t.Fatalf("store dump contains key material %q", needle)
				}
			}
		}
		if strings.Contains(dump, string(testPepper)) {
			t.Fatal("store dump contains the pepper")
		}
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := ctxT(t)
	cases := map[string]string{
		"":                          "no database configured",
		"mysql://root@localhost/x":  "unsupported database",
		"sqlite:":                   "no file path",
		"sqlite:/tmp/a?mode=ro":     "plain file path",
		"postgres://u:secret@[::1":  "parsing PostgreSQL DSN",
		"postgres://127.0.0.1:1/x":  "", // unreachable: opens, answers later
		"sqlite:/proc/nope/keys.db": "creating directory",
		// No error repeats a password, whatever form it comes in.
		"host=127.0.0.1 user=u password=secret dbname=x":          "key=value connection strings are not supported",
		"mysql:u:secret@127.0.0.1/x":                              "unsupported database scheme \"mysql\"",
		"secret/looks/like/a/path":                                "unsupported database",
		"postgres://u@[::1/x?sslpassword=secret":                  "parsing PostgreSQL DSN",
		"postgres://u@127.0.0.1:1/x?sslmode=nope&password=secret": "parsing PostgreSQL DSN",
	}
	for dsn, want := range cases {
		s, err := Open(ctx, dsn, Options{})
		if want == "" {
			if err != nil {
				t.Errorf("Open(%q): %v; an unreachable server must not fail Open", dsn, err)
				continue
			}
			if _, err := s.Lookup(ctx, Digest{}); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("Lookup on an unreachable server: %v", err)
			}
			s.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", dsn, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error shows the password: %v", dsn, err)
		}
	}
}

func TestOpenPostgresPermanentErrors(t *testing.T) {
	base := pgtest.NewDatabase(t)
	ctx := ctxT(t)
	missing := strings.Replace(base, "/keygate_test_", "/keygate_nonexistent_", 1)
	if _, err := Open(ctx, missing, Options{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open of a missing database: %v", err)
	}
}

func TestRedactDSN(t *testing.T) {
	cases := map[string]string{
		"postgres://u:pw@h/db":          "postgres://u:xxxxx@h/db",
		"postgres://u@h/db":             "postgres://u@h/db",
		"postgres://h/db":               "postgres://h/db",
		"sqlite:/a@b/c":                 "sqlite:/a@b/c",
		"postgresql://u:p@ss@h:5432/db": "postgresql://u:xxxxx@h:5432/db",
		"postgres://u@h/db?password=hunter2&sslmode=disable": "postgres://u@h/db?password=xxxxx&sslmode=disable",
		"postgres://u:pw@[::1":                               "postgres://u:xxxxx@[::1",
		// Every query parameter whose name holds "password", in place.
		"postgres://u@h/db?sslpassword=pw&sslmode=require":           "postgres://u@h/db?sslpassword=xxxxx&sslmode=require",
		"postgres://u@h/db?sslmode=require&SSLPassword=pw":           "postgres://u@h/db?sslmode=require&SSLPassword=xxxxx",
		"postgres://u@h/db?sslmode=require&pass%77ord=pw":            "postgres://u@h/db?sslmode=require&pass%77ord=xxxxx",
		"postgres://u@h/db?password=a&password=b&application_name=x": "postgres://u@h/db?password=xxxxx&password=xxxxx&application_name=x",
		"postgres://u@h/db?x_password_y=pw#frag":                     "postgres://u@h/db?x_password_y=xxxxx#frag",
		"postgres://u:pw@h/db?sslpassword=pw2":                       "postgres://u:xxxxx@h/db?sslpassword=xxxxx",
		"postgres://u@h/db?password=":                                "postgres://u@h/db?password=",
		"postgres://u:pw@[::1/db?sslpassword=pw2&sslmode=require":    "postgres://u:xxxxx@[::1/db?sslpassword=xxxxx&sslmode=require",
		"postgres://u@[::1/db?Password=pw2":                          "postgres://u@[::1/db?Password=xxxxx",
		// The key=value form.
		"host=h user=u password=pw dbname=d":                   "host=h user=u password=xxxxx dbname=d",
		"host=h password = pw sslpassword='a b\\' c' dbname=d": "host=h password = xxxxx sslpassword=xxxxx dbname=d",
		"password='unterminated":                               "password=xxxxx",
		"PASSWORD=pw":                                          "PASSWORD=xxxxx",
		"host=h sslmode=require":                               "host=h sslmode=require",
	}
	for in, want := range cases {
		if got := RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKeyParamsValidate(t *testing.T) {
	now := time.Now()
	long := strings.Repeat("x", 300)
	// Every case breaks one rule, and the error must name that rule: a
	// case that failed for another reason would not guard its own.
	var manyScopes []string
	for i := range MaxScopes + 1 {
		manyScopes = append(manyScopes, fmt.Sprintf("s%d", i))
	}
	manyMeta := map[string]string{}
	for i := range MaxMetadata + 1 {
		manyMeta[fmt.Sprintf("k%d", i)] = "v"
	}
	bad := map[string]struct {
		p    NewKeyParams
		want string
	}{
		"no name":            {NewKeyParams{}, "name is required"},
		"blank name":         {NewKeyParams{Name: "  "}, "name is required"},
		"long name":          {NewKeyParams{Name: long}, "name is too long"},
		"control in name":    {NewKeyParams{Name: "a\nb"}, "control character"},
		"bad utf8":           {NewKeyParams{Name: "a\xffb"}, "not valid UTF-8"},
		"long owner":         {NewKeyParams{Name: "a", Owner: long}, "owner is too long"},
		"bad scope":          {NewKeyParams{Name: "a", Scopes: []string{"read orders"}}, "may contain only"},
		"empty scope":        {NewKeyParams{Name: "a", Scopes: []string{""}}, "must be 1 to 64 characters"},
		"long scope":         {NewKeyParams{Name: "a", Scopes: []string{strings.Repeat("s", MaxScopeLen+1)}}, "must be 1 to 64 characters"},
		"too many scopes":    {NewKeyParams{Name: "a", Scopes: manyScopes}, "too many scopes: 65"},
		"bad meta key":       {NewKeyParams{Name: "a", Metadata: map[string]string{"a b": "c"}}, "may contain only"},
		"long meta key":      {NewKeyParams{Name: "a", Metadata: map[string]string{strings.Repeat("k", MaxMetadataKey+1): "v"}}, "must be 1 to 64 characters"},
		"bad meta value":     {NewKeyParams{Name: "a", Metadata: map[string]string{"a": "\x00"}}, "control character"},
		"long meta value":    {NewKeyParams{Name: "a", Metadata: map[string]string{"a": strings.Repeat("v", MaxMetadataValue+1)}}, "is too long"},
		"too many meta keys": {NewKeyParams{Name: "a", Metadata: manyMeta}, "too many metadata entries: 33"},
		"past expiry":        {NewKeyParams{Name: "a", ExpiresAt: now.Add(-time.Second)}, "not in the future"},
	}
	for name, c := range bad {
		err := c.p.Validate(now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate = %v, want an error containing %q", name, err, c.want)
		}
	}
	// At the limits exactly, everything is accepted.
	edge := NewKeyParams{Name: "edge", Scopes: manyScopes[:MaxScopes], Metadata: map[string]string{}}
	for k := range manyMeta {
		if len(edge.Metadata) < MaxMetadata {
			edge.Metadata[k] = strings.Repeat("v", MaxMetadataValue)
		}
	}
	if err := edge.Validate(now); err != nil {
		t.Fatalf("params at the limits refused: %v", err)
	}
	ok := NewKeyParams{Name: "ok", Owner: "Ünïcode owner", Scopes: []string{"b", "a:x", "b"}, Metadata: map[string]string{"k.1": "v"}}
	if err := ok.Validate(now); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ok.Scopes, []string{"a:x", "b"}) {
		t.Fatalf("scopes not normalised: %v", ok.Scopes)
	}
}

// TestKeyStatusRevocationWinsOverExpiry: a key both revoked and expired
// is revoked, so that it answers like an unknown key and does not tell a
// client that it once existed.
func TestKeyStatusRevocationWinsOverExpiry(t *testing.T) {
	now := time.Unix(2_000_000_000, 0)
	for _, c := range []struct {
		k    Key
		want string
	}{
		{Key{}, StatusActive},
		{Key{ExpiresAt: now.Add(time.Second)}, StatusActive},
		{Key{ExpiresAt: now}, StatusExpired},
		{Key{RevokedAt: now.Add(-time.Hour)}, StatusRevoked},
		{Key{RevokedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)}, StatusRevoked},
		{Key{RevokedAt: now.Add(-time.Minute), ExpiresAt: now.Add(-time.Hour)}, StatusRevoked},
	} {
		if got := c.k.Status(now); got != c.want {
			t.Errorf("Status of %+v = %s, want %s", c.k, got, c.want)
		}
	}
}

// TestOpenSchemaModes: commands that must not create or migrate a store
// can say so, and Pending tells what Migrate would do.
func TestOpenSchemaModes(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		dsn := kind.newDSN(t)
		all, _ := loadMigrations(kind.name)
		if _, err := Open(ctx, dsn, Options{Schema: SchemaRequire}); !errors.Is(err, ErrNoStore) {
			t.Fatalf("SchemaRequire on an empty database: %v, want ErrNoStore", err)
		}
		s := openT(t, dsn, Options{Schema: SchemaAsIs})
		names, err := s.Pending(ctx)
		if err != nil || len(names) != len(all) || names[0] != all[0].name {
			t.Fatalf("Pending on an empty database: %v, %v; want all %d migrations", names, err, len(all))
		}
		applied, err := s.Migrate(ctx)
		if err != nil || len(applied) != len(all) {
			t.Fatalf("Migrate applied %v, %v", applied, err)
		}
		if names, err := s.Pending(ctx); err != nil || len(names) != 0 {
			t.Fatalf("Pending after Migrate: %v, %v", names, err)
		}
		s.Close()
		openT(t, dsn, Options{Schema: SchemaRequire}).Close()
		// An older schema is refused, not migrated.
		rawExec(t, kind.name, dsn, fmt.Sprintf("DELETE FROM keygate_schema_migrations WHERE version = %d", len(all)))
		if _, err := Open(ctx, dsn, Options{Schema: SchemaRequire}); !errors.Is(err, ErrSchemaOld) {
			t.Fatalf("SchemaRequire on an older schema: %v, want ErrSchemaOld", err)
		}
	})
}

func TestSQLiteMustExist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	path := filepath.Join(dir, "keys.db")
	_, err := Open(ctxT(t), "sqlite:"+path, Options{MustExist: true})
	if !errors.Is(err, ErrNoStore) || !strings.Contains(err.Error(), path) {
		t.Fatalf("MustExist on a missing file: %v, want ErrNoStore naming %s", err, path)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("MustExist created %s (%v)", dir, err)
	}
}

func TestSQLitePathHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if got := SQLitePath("sqlite:~/keys.db"); got != filepath.Join(home, "keys.db") {
		t.Errorf("SQLitePath(sqlite:~/keys.db) = %q, want it in %s", got, home)
	}
	if err := ValidateDSN("sqlite:~other/keys.db"); err == nil || !strings.Contains(err.Error(), "~user") {
		t.Errorf("ValidateDSN(sqlite:~other/keys.db) = %v", err)
	}
}

func TestStorePrefixes(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		s := openT(t, kind.newDSN(t), Options{})
		if p, err := s.Prefixes(ctx); err != nil || len(p) != 0 {
			t.Fatalf("Prefixes of a new store: %v, %v", p, err)
		}
		start := time.Now().Add(-time.Second)
		for _, p := range []string{"kg", "acme_live", "kg"} {
			if err := s.AcceptPrefix(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		p, err := s.Prefixes(ctx)
		if err != nil || len(p) != 2 || p[0].Prefix != "acme_live" || p[1].Prefix != "kg" || p[0].At.Before(start) || p[1].At.Before(p[0].At) {
			t.Fatalf("Prefixes: %+v, %v", p, err)
		}
	})
}

// TestStoreResetPepperCheck: a mistyped first pepper can be forgotten
// while no key depends on it, and only then.
func TestStoreResetPepperCheck(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		dsn := kind.newDSN(t)
		wrong := testHasher(t)
		right, err := NewHasher(otherPepper)
		if err != nil {
			t.Fatal(err)
		}
		openT(t, dsn, Options{PepperCheck: wrong.PepperCheck()}).Close()
		if _, err := Open(ctx, dsn, Options{PepperCheck: right.PepperCheck()}); !errors.Is(err, ErrPepperMismatch) {
			t.Fatalf("a second pepper: %v", err)
		}
		s := openT(t, dsn, Options{})
		if err := s.ResetPepperCheck(ctx); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = openT(t, dsn, Options{PepperCheck: right.PepperCheck()})
		if _, _, err := issueKey(ctx, s, mustFormat(t, ""), right, NewKeyParams{Name: "k"}); err != nil {
			t.Fatal(err)
		}
		if err := s.ResetPepperCheck(ctx); !errors.Is(err, ErrStoreNotEmpty) {
			t.Fatalf("reset with a key in the store: %v, want ErrStoreNotEmpty", err)
		}
		s.Close()
		openT(t, dsn, Options{PepperCheck: right.PepperCheck()}).Close()
	})
}
