package keystore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
		got := CheckStoreDir(tt.dsn)
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
	s, err := Open(t.Context(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := CheckStoreDir(dsn); got != "" {
		t.Errorf("the directory Open made draws a warning: %q", got)
	}
}
