package keystore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
	_ "github.com/keygate/keygate/keystore/postgres"
	_ "github.com/keygate/keygate/keystore/sqlite"
)

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
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
		s, err := keystore.Open(ctx, dsn, keystore.Options{})
		if want == "" {
			if err != nil {
				t.Errorf("Open(%q): %v; an unreachable server must not fail keystore.Open", dsn, err)
				continue
			}
			if _, err := s.Lookup(ctx, keystore.Digest{}); err == nil || errors.Is(err, keystore.ErrNotFound) {
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
