package caddymodule

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestLegacyKeys: an imported legacy key works only with legacy_keys, and
// then like any key (identity, key id in the access log); a string that
// starts like a Keygate key is still refused as malformed without asking
// the store, and so is one too short or with a space to be a legacy key.
func TestLegacyKeys(t *testing.T) {
	ts := newTestStore(t)
	const legacy = "sk-live-7f3a9c2e4b1d8f6a0e5c"
	lc := &keystore.Lifecycle{Store: ts.store, Format: ts.format, Hasher: ts.hasher}
	done, err := lc.Import(context.Background(), "test", []keystore.ImportRow{
		{Line: 2, Key: legacy, Params: keystore.NewKeyParams{Name: "old", Owner: "acme", Scopes: []string{"read"}}},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	id := done[0].Key.ID

	off := ts.handler(t, &Handler{})
	checkProblem(t, serve(off, newRequest("/", bearer(legacy))), http.StatusUnauthorized, "invalid_key")
	if q := off.verifier.Stats.StoreQueries.Load(); q != 0 {
		t.Fatalf("without legacy_keys a legacy key reached the store (%d queries)", q)
	}

	on := ts.handler(t, &Handler{LegacyKeys: true, Scopes: []string{"read"}})
	s := serve(on, newRequest("/", bearer(legacy)))
	if s.next == nil {
		t.Fatalf("legacy key refused: %d %s", s.rec.Code, s.rec.Body)
	}
	if got := s.next.Header.Get("X-Api-Key-Id"); got != id {
		t.Errorf("identity header %q, want %s", got, id)
	}
	if got := s.next.Header.Get("Authorization"); got != "" {
		t.Errorf("the legacy key went upstream: %q", got)
	}
	if f := logFields(s.extra); f["api_key_id"] != id {
		t.Errorf("log fields %v, want api_key_id %s", f, id)
	}

	// Revoked: refused like an unknown legacy key.
	if _, _, err := lc.Revoke(context.Background(), "test", id); err != nil {
		t.Fatal(err)
	}
	revoked := serve(on, newRequest("/", bearer(legacy))) // may still be cached until invalidation
	unknown := serve(on, newRequest("/", bearer("sk-live-0000000000000000000")))
	checkProblem(t, unknown, http.StatusUnauthorized, "invalid_key")
	if revoked.next == nil && revoked.rec.Body.String() != unknown.rec.Body.String() {
		t.Errorf("revoked and unknown legacy keys differ:\n%s\n%s", revoked.rec.Body, unknown.rec.Body)
	}

	before := on.verifier.Stats.StoreQueries.Load()
	for _, k := range []string{
		"kg_" + strings.Repeat("A", 40), // the handler's prefix: a broken Keygate key
		"short-legacy",                  // under 16 characters
		"sk-live 7f3a9c2e4b1d8f6a0e5c",  // a space
		strings.Repeat("x", keystore.MaxLegacyKeyLen+1),
	} {
		checkProblem(t, serve(on, newRequest("/", "X-API-Key-Ignored: 1", bearer(k))), http.StatusUnauthorized, "invalid_key")
	}
	if q := on.verifier.Stats.StoreQueries.Load(); q != before {
		t.Fatalf("strings that are not legacy keys reached the store (%d queries)", q-before)
	}
}
