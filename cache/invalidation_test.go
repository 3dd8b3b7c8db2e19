package cache

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
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
	clk1.add(2 * time.Second)
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
	pepper := []byte("0123456789abcdef0123456789abcdef")
	hasher, _ := keystore.NewHasher(pepper)
	format, _ := keystore.NewFormat("")
	_, rec, err := keystore.Issue(ctx, cli, format, hasher, keystore.NewKeyParams{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}

	v, err := New(gw, Config{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	inv := StartInvalidator(gw, nil)
	inv.Add(v)
	defer func() {
		inv.Stop()
		v.Close()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !inv.IsHealthy() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if k, err := v.Verify(ctx, rec.Digest); err != nil || k.Status(time.Now()) != keystore.StatusActive {
		t.Fatalf("before revocation: %v %+v", err, k)
	}
	start := time.Now()
	if _, _, err := cli.Revoke(ctx, rec.ID, time.Now()); err != nil {
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
