package caddymodule

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
)

// TestRotationGrace: after a rotation both keys work until the grace
// ends, to the instant, on cached entries too; then the old key is
// refused like a revoked one.
func TestRotationGrace(t *testing.T) {
	ts := newTestStore(t)
	oldKey, old := ts.issue(t, keystore.NewKeyParams{Scopes: []string{"read"}})
	clk := clock.NewFake(time.Now().Truncate(time.Second))
	h := ts.handler(t, &Handler{clock: clk, Cache: &CacheConfig{TTL: caddy.Duration(2 * time.Hour)}})
	// A watch that starts after the rotation reads the change log past it
	// and purges the cache instead of invalidating the key, which
	// waitInvalidated does not count.
	waitWatching(t, h)
	if s := serve(h, newRequest("/", bearer(oldKey))); s.next == nil {
		t.Fatalf("the old key before the rotation: %d", s.rec.Code)
	}
	lc := &keystore.Lifecycle{Store: ts.store, Hasher: ts.hasher, Now: clk.Now}
	newKey, rec, _, err := lc.Rotate(context.Background(), "test", old.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	waitInvalidated(t, h)
	for _, k := range []string{oldKey, newKey} {
		if s := serve(h, newRequest("/", bearer(k))); s.next == nil {
			t.Fatalf("a key during the grace refused: %d %s", s.rec.Code, s.rec.Body)
		}
	}
	if s := serve(h, newRequest("/", bearer(newKey))); s.next.Header.Get("X-Api-Key-Id") != rec.ID {
		t.Errorf("the new key's identity: %q", s.next.Header.Get("X-Api-Key-Id"))
	}
	clk.Advance(time.Hour - time.Nanosecond)
	if s := serve(h, newRequest("/", bearer(oldKey))); s.next == nil {
		t.Fatalf("the old key a nanosecond before the grace ends: %d", s.rec.Code)
	}
	clk.Advance(time.Nanosecond)
	checkProblem(t, serve(h, newRequest("/", bearer(oldKey))), http.StatusUnauthorized, CodeInvalidKey)
	if s := serve(h, newRequest("/", bearer(newKey))); s.next == nil {
		t.Fatalf("the new key after the grace: %d", s.rec.Code)
	}
}

// waitInvalidated waits until the change feed delivered a change to the
// handler's cache.
func waitInvalidated(t *testing.T, h *Handler) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.verifier.Stats.Invalidations.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no invalidation within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
