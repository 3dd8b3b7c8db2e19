package cache

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
	_ "github.com/keygate/keygate/keystore/sqlite"
)

// scriptedWatcher lets a test play the store's side of a watch.
type scriptedWatcher struct {
	handler chan keystore.ChangeHandler
}

func (w *scriptedWatcher) Watch(ctx context.Context, h keystore.ChangeHandler) error {
	w.handler <- h
	<-ctx.Done()
	return ctx.Err()
}

func TestInvalidatorFansOut(t *testing.T) {
	w := &scriptedWatcher{handler: make(chan keystore.ChangeHandler, 1)}
	var health atomic.Int32
	inv := StartInvalidator(w, func(ok bool, err error) { health.Add(1) })
	defer inv.Stop()
	h := <-w.handler

	s := newFakeStore()
	d := s.add("a")
	v1, clk1 := newVerifier(t, s, Config{TTL: time.Hour})
	v2, _ := newVerifier(t, s, Config{TTL: time.Hour})
	inv.Add(v1)
	inv.Add(v2)
	if !v1.degraded.Load() {
		t.Fatal("a verifier added before the watch is up must be degraded")
	}
	h.Resync()
	h.Healthy(true, nil)
	if v1.degraded.Load() || v2.degraded.Load() || !inv.IsHealthy() {
		t.Fatal("healthy watch left verifiers degraded")
	}
	ctx := context.Background()
	v1.Verify(ctx, d)
	v2.Verify(ctx, d)
	h.KeyChanged(d)
	v1.Verify(ctx, d)
	v2.Verify(ctx, d)
	if q := s.queries.Load(); q != 4 {
		t.Fatalf("KeyChanged did not reach both verifiers: %d queries, want 4", q)
	}

	// While the watch is down, entries are trusted for DegradedTTL only.
	h.Healthy(false, errors.New("connection lost"))
	clk1.Advance(2 * time.Second)
	v1.Verify(ctx, d)
	if q := s.queries.Load(); q != 5 {
		t.Fatalf("degraded verifier trusted a 2s old entry (queries %d)", q)
	}
	if health.Load() != 2 {
		t.Fatalf("onHealth called %d times, want 2 (up, down)", health.Load())
	}

	inv.Remove(v2)
	h.Resync()
	v2.Verify(ctx, d)
	if q := s.queries.Load(); q != 5 {
		t.Fatal("a removed verifier was still purged")
	}
}

// TestInvalidatorWithSQLite runs the whole chain on a real store: a
// second Store on the same file (standing in for the CLI in another
// process) revokes a key that the verifier has cached.
func TestInvalidatorWithSQLite(t *testing.T) {
	ctx := context.Background()
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	gw, err := keystore.Open(ctx, dsn, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	cli, err := keystore.Open(ctx, dsn, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	hasher, err := keystore.NewHasher([]byte("a8d3f61c0b9e47a25c8f1d6b3e09a7c4f2b5d8e16a3c9f07b4e2d5a81c6f3e90"))
	if err != nil {
		t.Fatal(err)
	}
	format, _ := keystore.NewFormat("")
	_, rec, err := testkeys.Issue(ctx, cli, format, hasher, keystore.NewKeyParams{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}

	// Cached entries are trusted for an hour even while the watch is
	// down: only a change delivered by the watch can make the revocation
	// visible within the test's bound.
	v, err := New(gw, Config{TTL: time.Hour, DegradedTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	inv := StartInvalidator(gw, nil)
	inv.Add(v)
	defer func() {
		inv.Stop()
		v.Close()
	}()
	if ok, _ := waitFor(10*time.Second, inv.IsHealthy); !ok {
		t.Fatal("the SQLite change watch did not start")
	}
	if k, err := v.Verify(ctx, rec.Digest); err != nil || k.Status(time.Now()) != keystore.StatusActive {
		t.Fatalf("before revocation: %v %+v", err, k)
	}
	start := time.Now()
	if _, _, err := testkeys.Revoke(ctx, cli, rec.ID); err != nil {
		t.Fatal(err)
	}
	for {
		k, err := v.Verify(ctx, rec.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if k.Status(time.Now()) == keystore.StatusRevoked {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the revocation never reached the cache")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("revocation visible after %v", time.Since(start))
}

// TestResyncPurgesAtMostOncePerInterval: a watch that reconnects again and
// again (each time asking for a resync) purges the caches a few times at
// once, then at most once per interval, and a resync held back is not
// lost.
func TestResyncPurgesAtMostOncePerInterval(t *testing.T) {
	defer func(d time.Duration) { minPurgeInterval = d }(minPurgeInterval)
	minPurgeInterval = 200 * time.Millisecond
	_, h, v := invalidatedVerifier(t)
	for i := 0; i < 100; i++ {
		h.Resync()
	}
	if n := v.Stats.Purges.Load(); n != purgeBurst {
		t.Fatalf("100 resyncs in a row purged %d times at once, want %d", n, purgeBurst)
	}
	if ok, _ := waitFor(10*time.Second, func() bool { return v.Stats.Purges.Load() == purgeBurst+1 }); !ok {
		t.Fatal("the resyncs held back were never applied")
	}
	time.Sleep(2 * minPurgeInterval)
	if n := v.Stats.Purges.Load(); n != purgeBurst+1 {
		t.Fatalf("%d purges, want %d: the held-back resyncs fold into one", n, purgeBurst+1)
	}
}

// TestMalformedChangeIsCounted: a change that is not a key digest is
// counted and purges nothing.
func TestMalformedChangeIsCounted(t *testing.T) {
	inv, h, v := invalidatedVerifier(t)
	h.MalformedChange()
	h.MalformedChange()
	if inv.Malformed() != 2 || v.Stats.Purges.Load() != 0 {
		t.Fatalf("malformed %d, purges %d; want 2 and 0", inv.Malformed(), v.Stats.Purges.Load())
	}
}

// invalidatedVerifier is a verifier under an Invalidator whose watch the
// test plays through h.
func invalidatedVerifier(t *testing.T) (*Invalidator, keystore.ChangeHandler, *Verifier) {
	t.Helper()
	w := &scriptedWatcher{handler: make(chan keystore.ChangeHandler, 1)}
	inv := StartInvalidator(w, nil)
	t.Cleanup(inv.Stop)
	h := <-w.handler
	v, _ := newVerifier(t, newFakeStore(), Config{})
	inv.Add(v)
	return inv, h, v
}
