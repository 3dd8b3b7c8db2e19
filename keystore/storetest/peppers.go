package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
)

// thirdPepper is a pepper neither of the others is.
var thirdPepper = []byte("9be0c4a71d3f58e26b9d0a4c7e15f3b82d6a0c9e4f17b53a8d2e6c0f91a47b3d")

// peppers builds the hashers of a rotation for tests.
func peppers(t *testing.T, current []byte, previous [][]byte, next []byte) keystore.Peppers {
	t.Helper()
	p, err := keystore.NewPeppers(current, previous, next)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// openWith opens dsn with the peppers of p.
func openWith(t *testing.T, dsn string, p keystore.Peppers) (keystore.Store, error) {
	var opts keystore.Options
	p.SetOptions(&opts)
	return keystore.Open(Context(t), dsn, opts)
}

// storeBeforeRotation opens a new store with the tests' pepper alone,
// closed when the test ends.
func storeBeforeRotation(t *testing.T, kind Backend) (string, keystore.Peppers, keystore.Store) {
	t.Helper()
	dsn := kind.NewDSN(t)
	oldP := peppers(t, testPepper, nil, nil)
	s, err := openWith(t, dsn, oldP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return dsn, oldP, s
}

// uses returns the store's pepper uses by id.
func uses(t *testing.T, s keystore.Store) map[string]keystore.PepperUse {
	t.Helper()
	list, err := s.PepperUses(Context(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]keystore.PepperUse{}
	for _, u := range list {
		m[u.ID] = u
	}
	return m
}

// testPepperRotation: a store made with one pepper accepts a process
// that also has a new one, registers the new one as the newest, moves a
// key to it only from an older pepper, and counts the keys on each; once
// registered, the new pepper alone opens the store.
func testPepperRotation(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn, oldP, s := storeBeforeRotation(t, kind)
	key, rec, err := testkeys.Issue(ctx, s, Format(t, ""), oldP.Current, keystore.NewKeyParams{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.PepperID != oldP.Current.ID() {
		t.Fatalf("a new key records pepper %q, want %q", rec.PepperID, oldP.Current.ID())
	}
	parsed, err := Format(t, "").Parse(key)
	if err != nil {
		t.Fatal(err)
	}

	// The new pepper alone is refused until it is registered.
	newOnly := peppers(t, otherPepper, nil, nil)
	if _, err := openWith(t, dsn, newOnly); !errors.Is(err, keystore.ErrPepperMismatch) {
		t.Fatalf("Open with an unregistered pepper only: %v, want ErrPepperMismatch", err)
	}
	// Phase 1: the old pepper current, the new one next: registered,
	// newest.
	phase1 := peppers(t, testPepper, nil, otherPepper)
	s1, err := openWith(t, dsn, phase1)
	if err != nil {
		t.Fatalf("Open with the next pepper: %v", err)
	}
	s1.Close()
	u := uses(t, s)
	if o, n := u[oldP.Current.ID()], u[newOnly.Current.ID()]; o.Keys != 1 || o.Working != 1 || o.Newest || o.Registered.IsZero() || !n.Newest || n.Keys != 0 {
		t.Fatalf("pepper uses after phase 1: %+v", u)
	}

	// Phase 2: the key found with the previous pepper moves to the new.
	phase2 := peppers(t, otherPepper, [][]byte{testPepper}, nil)
	s2, err := openWith(t, dsn, phase2)
	if err != nil {
		t.Fatalf("Open with the previous pepper: %v", err)
	}
	defer s2.Close()
	got, h, err := phase2.Lookup(ctx, s2, parsed)
	if err != nil || h != phase2.Previous[0] || got.ID != rec.ID || got.PepperID != oldP.Current.ID() {
		t.Fatalf("Peppers.Lookup before the re-hash: %v, %v (hasher %v)", got, err, h == phase2.Previous[0])
	}
	from, to := phase2.Previous[0].Digest(parsed), phase2.Current.Digest(parsed)
	if _, err := s2.Rehash(ctx, rec.ID, from, phase2.Previous[0].Digest(parsed), oldP.Current.ID()); !errors.Is(err, keystore.ErrNotNewestPepper) {
		t.Fatalf("Rehash to an older pepper: %v, want ErrNotNewestPepper", err)
	}
	if moved, err := s2.Rehash(ctx, rec.ID, from, to, phase2.Current.ID()); err != nil || !moved {
		t.Fatalf("Rehash: %v, %v", moved, err)
	}
	if moved, err := s2.Rehash(ctx, rec.ID, from, to, phase2.Current.ID()); err != nil || moved {
		t.Fatalf("Rehash a second time: %v, %v; want nothing done", moved, err)
	}
	if _, err := s2.Lookup(ctx, from); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("the old digest still finds the key: %v", err)
	}
	if k, err := s2.Lookup(ctx, to); err != nil || k.ID != rec.ID || k.PepperID != phase2.Current.ID() || k.Name != rec.Name {
		t.Fatalf("Lookup with the new digest: %+v, %v", k, err)
	}
	u = uses(t, s2)
	if o, n := u[oldP.Current.ID()], u[phase2.Current.ID()]; o.Keys != 0 || n.Keys != 1 || n.Working != 1 {
		t.Fatalf("pepper uses after the re-hash: %+v", u)
	}
	// Registered, the new pepper opens the store alone.
	s3, err := openWith(t, dsn, newOnly)
	if err != nil {
		t.Fatalf("Open with the registered new pepper alone: %v", err)
	}
	s3.Close()
	// A third pepper registered as next becomes the newest: the second
	// is then no longer a re-hash target.
	s4, err := openWith(t, dsn, peppers(t, otherPepper, nil, thirdPepper))
	if err != nil {
		t.Fatal(err)
	}
	s4.Close()
	if _, err := s2.Rehash(ctx, rec.ID, to, from, phase2.Current.ID()); !errors.Is(err, keystore.ErrNotNewestPepper) {
		t.Fatalf("Rehash to a pepper no longer the newest: %v, want ErrNotNewestPepper", err)
	}
}

// testPepperRotationImport: an import in a rotation finds a legacy key
// imported with the previous pepper instead of adding it again.
func testPepperRotationImport(t *testing.T, kind Backend) {
	ctx := Context(t)
	_, oldP, s := storeBeforeRotation(t, kind)
	rows := []keystore.ImportRow{{Line: 1, Key: "legacy-key-made-long-before-0001", Params: keystore.NewKeyParams{Name: "legacy"}}}
	if _, err := (&keystore.Lifecycle{Store: s, Hasher: oldP.Current}).Import(ctx, testkeys.Actor, rows, false); err != nil {
		t.Fatal(err)
	}
	p := peppers(t, otherPepper, [][]byte{testPepper}, nil)
	out, err := (&keystore.Lifecycle{Store: s, Hasher: p.Current, OtherPeppers: p.Others()}).Import(ctx, testkeys.Actor, rows, false)
	if err != nil || len(out) != 1 || !out[0].Existed {
		t.Fatalf("importing the same key in a rotation: %+v, %v; want it found", out, err)
	}
}
