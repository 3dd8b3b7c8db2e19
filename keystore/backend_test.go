package keystore

import (
	"strings"
	"testing"
)

// TestOpenNamesMissingBackend: a program that does not link the backend a
// DSN names is told which package to import.
func TestOpenNamesMissingBackend(t *testing.T) {
	backendsMu.Lock()
	linked := backends
	backends = map[string]Backend{}
	backendsMu.Unlock()
	t.Cleanup(func() {
		backendsMu.Lock()
		backends = linked
		backendsMu.Unlock()
	})
	for dsn, pkg := range map[string]string{
		"postgres://u@127.0.0.1/db": "github.com/keygate/keygate/keystore/postgres",
		"sqlite:/tmp/keys.db":       "github.com/keygate/keygate/keystore/sqlite",
	} {
		want := `import _ "` + pkg + `"`
		if _, err := Open(t.Context(), dsn, Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want an error containing %s", dsn, err, want)
		}
		if _, err := MigrationNames(dsn); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("MigrationNames(%q) = %v, want an error containing %s", dsn, err, want)
		}
	}
}
