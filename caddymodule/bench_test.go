package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
)

// BenchmarkServeHTTP measures the handler's own cost per request (no
// network): a valid key served from the cache (with usage metering on,
// the default, and off, and with identity_jwt on), and a malformed key.
func BenchmarkServeHTTP(b *testing.B) {
	dir := b.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "keys.db")
	pepper := "c47e1a9d3b0f68e25a7d9c1b4f03e8a6d2b5c9f71e04a38d6b2f5c0e9a7d13b4"
	ctx, cancel := testContext(b, nil)
	defer cancel()
	h := &Handler{Database: dsn, Pepper: pepper}
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	defer h.Cleanup()
	// The same handler with usage metering off, for its cost.
	offCtx, offCancel := testContext(b, caddy.ModuleMap{"keygate": []byte(`{"usage":{"off":true}}`)})
	defer offCancel()
	hOff := &Handler{Database: dsn, Pepper: pepper}
	if err := hOff.Provision(offCtx); err != nil {
		b.Fatal(err)
	}
	defer hOff.Cleanup()
	// The same handler with a signed identity token per request (cached
	// per key, as in production).
	hJWT := &Handler{Database: dsn, Pepper: pepper, IdentityJWT: &IdentityJWT{Audience: "legacy-api"}}
	if err := hJWT.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	defer hJWT.Cleanup()
	if h.usage == nil || hOff.usage != nil {
		b.Fatal("usage metering is not on and off as the benchmark needs")
	}
	store, err := keystore.Open(context.Background(), dsn, keystore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	hasher, _ := keystore.NewHasher([]byte(pepper))
	format, _ := keystore.NewFormat("")
	key, _, err := testkeys.Issue(context.Background(), store, format, hasher, keystore.NewKeyParams{Name: "bench", Owner: "acme", Scopes: []string{"a"}})
	if err != nil {
		b.Fatal(err)
	}
	var admitted int
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { admitted++; return nil })
	for _, c := range []struct {
		name, key string
		valid     bool
		h         *Handler
	}{
		{"valid", key, true, h},
		{"valid-usage-off", key, true, hOff},
		{"valid-identity-jwt", key, true, hJWT},
		{"malformed", key[:len(key)-1] + "!", false, h},
	} {
		b.Run(c.name, func(b *testing.B) {
			admitted = 0
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest("GET", "/orders", nil)
				r.Header.Set("Authorization", "Bearer "+c.key)
				repl := caddy.NewReplacer()
				r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, r, next)
				n++
			}
			// The benchmark measures what it says: every valid request
			// was admitted, no malformed one.
			if want := map[bool]int{true: n, false: 0}[c.valid]; admitted != want {
				b.Fatalf("%d of %d requests admitted, want %d", admitted, n, want)
			}
		})
	}
}

// BenchmarkRequestSetup is the part of BenchmarkServeHTTP that is not the
// handler, to subtract.
func BenchmarkRequestSetup(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("GET", "/orders", nil)
		r.Header.Set("Authorization", "Bearer x")
		repl := caddy.NewReplacer()
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		_ = httptest.NewRecorder()
	}
}
