package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore) // only for its private directories
	up := newUpstream(t)
	g := newGateway(t, sb)
	// Nothing listens on the database port: Caddy must start anyway and
	// fail closed per request.
	g.start(g.site(fmt.Sprintf("\tapi_key {\n\t\tdatabase postgres://postgres@127.0.0.1:%d/x\n\t\tpepper %s\n\t}\n\treverse_proxy %s",
		freePort(t), randomPepper(), up.hostPort())))

	key := unknownKey(t)
	// Twice: the first request finds the store never connected, the
	// second one a store that has already failed.
	for i := 1; i <= 2; i++ {
		r := bearer(t, g.url+"/", key)
		wantStatus(t, fmt.Sprintf("well-formed key, try %d", i), r, http.StatusServiceUnavailable)
		if got := r.header.Get("Retry-After"); got != "5" {
			t.Errorf("try %d: Retry-After %q, want the default 5", i, got)
		}
		if p := r.problem(t); p.Code != "store_unavailable" {
			t.Errorf("try %d: code %q, want store_unavailable", i, p.Code)
		}
	}
	r := bearer(t, g.url+"/", malformedVariants(key)["bad checksum"])
	wantStatus(t, "malformed key", r, http.StatusUnauthorized)
	if p := r.problem(t); p.Code != "invalid_key" {
		t.Errorf("malformed key: code %q, want invalid_key", p.Code)
	}
	r = get(t, g.url+"/")
	wantStatus(t, "no key", r, http.StatusUnauthorized)
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream got %d requests during the outage, want 0", n)
	}
}

func TestEmbeddedStoreByDefault(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(g.site("\tapi_key\n\treverse_proxy " + up.hostPort()))

	// The CLI gets neither --database nor --pepper (and the sandbox has
	// no KEYGATE_* variables): it must find the gateway's store and pepper.
	k := sb.createKey("default store")
	wantUpstream(t, "key made by the CLI", bearer(t, g.url+"/", k.Key))

	// The pepper and the store are private, and so are the store's WAL
	// files, which may exist while the gateway runs.
	for _, f := range []string{sb.sqlitePath() + ".pepper", sb.sqlitePath(), sb.sqlitePath() + "-wal", sb.sqlitePath() + "-shm"} {
		info, err := os.Stat(f)
		optional := strings.HasSuffix(f, "-wal") || strings.HasSuffix(f, "-shm")
		if optional && os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatalf("the embedded store's file is not where documented: %v", err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(f), perm)
		}
	}
}

func TestPostgresNeedsPepper(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, postgresStore)
	sb.unsetenv("KEYGATE_PEPPER")
	g := newGateway(t, sb)
	cfg := g.caddyfile(g.site("\tapi_key {\n\t\tdatabase " + sb.dsn + "\n\t}\n\trespond ok"))
	if err := os.WriteFile(g.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"validate", "run"} {
		res := sb.run(cmd, "--config", g.cfgPath, "--adapter", "caddyfile")
		if res.code == 0 || !strings.Contains(res.stdout+res.stderr, "pepper is required") {
			t.Errorf("caddy %s with PostgreSQL and no pepper: want a failure saying \"pepper is required\", got %s", cmd, res)
		}
	}
	res := sb.cli("create", "--name", "no pepper")
	if res.code == 0 || !strings.Contains(res.stderr, "pepper is required") {
		t.Errorf("create against PostgreSQL without pepper: want a failure saying \"pepper is required\", got %s", res)
	}
}

func TestPepperMismatch(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		// Starting the gateway records its pepper in the store.
		g.start(apiKeySite(g, up, ""))

		res := sb.cli("create", "--name", "wrong pepper", "--pepper", randomPepper())
		if res.code == 0 || !strings.Contains(res.stderr, "pepper does not match") {
			t.Errorf("create with another pepper: want a failure about the pepper not matching, got %s", res)
		}
		if strings.Contains(res.stdout, "kg_") {
			t.Errorf("create with another pepper printed a key: %s", res)
		}
		list := sb.mustCLI("list", "--all", "--json")
		var keys []json.RawMessage
		if err := json.Unmarshal([]byte(list.stdout), &keys); err != nil {
			t.Fatalf("list --json: %v\n%s", err, list)
		}
		if len(keys) != 0 {
			t.Errorf("create with another pepper stored %d keys:\n%s", len(keys), list.stdout)
		}
		// The right pepper still works, so the refusal was about the pepper.
		k := sb.createKey("right pepper")
		wantUpstream(t, "key made with the gateway's pepper", bearer(t, g.url+"/", k.Key))
	})
}
