package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

// TestConformance runs the key store conformance suite on SQLite, each
// test in a file of its own.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		NewDSN: newDSN,
		Dump: func(t *testing.T, dsn string) string {
			// The raw file, WAL included: what a stolen disk would show.
			var all []byte
			for _, suffix := range []string{"", "-wal"} {
				b, err := os.ReadFile(keystore.SQLitePath(dsn) + suffix)
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				all = append(all, b...)
			}
			return string(all)
		},
		Exec: func(t *testing.T, dsn, q string) {
			t.Helper()
			db, err := sql.Open("sqlite", keystore.SQLitePath(dsn)+"?_pragma=busy_timeout(5000)")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		},
		Bytes:     func(b []byte) string { return fmt.Sprintf("x'%x'", b) },
		AppliedAt: "0", // SQLite keeps Unix microseconds
		MalformedChanges: []string{
			"INSERT INTO keygate_key_changes (digest, changed_at) VALUES (x'01', 0)",
			"INSERT INTO keygate_key_changes (digest, changed_at) VALUES (x'', 0)",
			"INSERT INTO keygate_key_changes (digest, changed_at) VALUES (zeroblob(33), 0)",
		},
	})
}

// newDSN returns the DSN of a new store file in a directory of the test's.
func newDSN(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "keys.db") }
func TestSQLiteChangeLogGapResyncs(t *testing.T) {
	ctx := storetest.Context(t)
	dsn := newDSN(t)
	s := storetest.Open(t, dsn, keystore.Options{}).(*store)
	r := storetest.NewRecorder()
	h := storetest.Hasher(t)
	_, a, _ := testkeys.Issue(ctx, s, storetest.Format(t, ""), h, keystore.NewKeyParams{Name: "a"})
	_, b, _ := testkeys.Issue(ctx, s, storetest.Format(t, ""), h, keystore.NewKeyParams{Name: "b"})
	// Pretend we saw nothing since seq 0 and the log lost entry 1.
	if _, err := s.db.ExecContext(ctx, "DELETE FROM keygate_key_changes WHERE seq = 1"); err != nil {
		t.Fatal(err)
	}
	last, err := s.pollChanges(ctx, r, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Resyncs != 1 || !r.Saw(b.Digest) || r.Saw(a.Digest) || last != 2 {
		t.Fatalf("gap: resyncs %d, last %d, changes %d", r.Resyncs, last, len(r.Changed))
	}
}

func TestSQLiteMustExist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	path := filepath.Join(dir, "keys.db")
	_, err := keystore.Open(storetest.Context(t), "sqlite:"+path, keystore.Options{MustExist: true})
	if !errors.Is(err, keystore.ErrNoStore) || !strings.Contains(err.Error(), path) {
		t.Fatalf("MustExist on a missing file: %v, want ErrNoStore naming %s", err, path)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("MustExist created %s (%v)", dir, err)
	}
}

func TestSQLitePathHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if got := keystore.SQLitePath("sqlite:~/keys.db"); got != filepath.Join(home, "keys.db") {
		t.Errorf("SQLitePath(sqlite:~/keys.db) = %q, want it in %s", got, home)
	}
	if err := keystore.ValidateDSN("sqlite:~other/keys.db"); err == nil || !strings.Contains(err.Error(), "~user") {
		t.Errorf("ValidateDSN(sqlite:~other/keys.db) = %v", err)
	}
}

// TestCheckStoreDir: an embedded store's directory that other users can
// write draws a warning that says how to fix it; one they can only read
// (a home directory, typically) does not: the files in it are private.
func TestCheckStoreDir(t *testing.T) {
	parent := t.TempDir()
	dsnIn := func(dir string, mode os.FileMode) string {
		dir = filepath.Join(parent, dir)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		return "sqlite:" + filepath.Join(dir, "keys.db")
	}
	tests := []struct {
		name, dsn string
		want      []string // in the warning; none: no warning
	}{
		{"private", dsnIn("private", 0o700), nil},
		{"owner only, no execute", dsnIn("owner", 0o600), nil},
		{"readable by all", dsnIn("readable", 0o755), nil},
		{"group readable", dsnIn("group", 0o750), nil},
		{"writable by all", dsnIn("writable", 0o757), []string{"0757", "writable by other users", "chmod 700 " + filepath.Join(parent, "writable")}},
		{"writable by group", dsnIn("groupw", 0o770), []string{"0770", "writable by other users", "replace", "chmod 700"}},
		{"world writable, sticky", dsnIn("sticky", 0o777|os.ModeSticky), []string{"0777", "writable by other users"}},
		{"missing: Open will create it private", "sqlite:" + filepath.Join(parent, "none", "keys.db"), nil},
		{"postgres", "postgres://u@127.0.0.1/db", nil},
		{"not a DSN", "", nil},
	}
	for _, tt := range tests {
		got := keystore.CheckStoreDir(tt.dsn)
		if len(tt.want) == 0 {
			if got != "" {
				t.Errorf("%s: unexpected warning %q", tt.name, got)
			}
			continue
		}
		if got == "" {
			t.Errorf("%s: no warning", tt.name)
		}
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: warning %q lacks %q", tt.name, got, w)
			}
		}
	}
	// A directory Open creates is private.
	dsn := "sqlite:" + filepath.Join(parent, "made", "keys.db")
	s, err := keystore.Open(t.Context(), dsn, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := keystore.CheckStoreDir(dsn); got != "" {
		t.Errorf("the directory Open made draws a warning: %q", got)
	}
}
