package caddymodule

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/keystore"
)

// newPepper is the pepper a rotation moves to in the tests.
const newPepper = "7e2b9d4c1f0a63e85b7d2c9f4e1a06b38d5c2f7e9a14b60c3e8d5f2a7b9c41e6"

// TestPepperRotationHandler: with the new pepper current and the old one
// previous, keys made with the old pepper keep working, each is
// re-hashed with the new pepper after its first use, and their lookups
// cost the client nothing from its failed-check budget. With the new
// pepper only next, a key made with it works and stays as it is; unknown
// keys are still refused, and charged once per request.
func TestPepperRotationHandler(t *testing.T) {
	ts := newTestStore(t) // the old pepper: testPepper
	var keys []string
	var recs []*keystore.Key
	for range 5 {
		k, rec := ts.issue(t, keystore.NewKeyParams{})
		keys, recs = append(keys, k), append(recs, rec)
	}
	h := provision(t, &Handler{Database: ts.dsn, Pepper: newPepper, PreviousPeppers: []string{testPepper},
		FailedAuthLimit: &FailedAuthLimit{Rate: "1/h", Burst: 2, Delay: new(caddy.Duration)}})
	waitWatching(t, h)
	const client = "192.0.2.80"
	for i, k := range keys {
		if s := serve(h, withClientIP(newRequest("/", bearer(k)), client)); s.next == nil {
			t.Fatalf("key %d made with the previous pepper refused: %d %s", i, s.rec.Code, s.rec.Body)
		}
	}
	newHasher, err := keystore.NewHasher([]byte(newPepper))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		parsed, _ := ts.format.Parse(k)
		d := newHasher.Digest(parsed)
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := ts.store.Lookup(context.Background(), d)
			if err == nil {
				if got.ID != recs[i].ID || got.PepperID != newHasher.ID() {
					t.Fatalf("key %d after its re-hash: %+v", i, got)
				}
				break
			}
			if !errors.Is(err, keystore.ErrNotFound) || time.Now().After(deadline) {
				t.Fatalf("key %d was not re-hashed with the current pepper: %v", i, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// After the re-hash, the keys still work (now with the current
	// pepper, once the change reached the cache).
	for i, k := range keys {
		if s := serve(h, withClientIP(newRequest("/", bearer(k)), client)); s.next == nil {
			t.Fatalf("key %d refused after its re-hash: %d", i, s.rec.Code)
		}
	}
	// Unknown keys: refused, and each request charged once, so the
	// budget of 2 lasts two requests, not one.
	const stranger = "198.51.100.80"
	for range 2 {
		checkProblem(t, serve(h, withClientIP(newRequest("/", bearer(ts.unknownKey(t))), stranger)), 401, CodeInvalidKey)
	}
	checkProblem(t, serve(h, withClientIP(newRequest("/", bearer(ts.unknownKey(t))), stranger)), 429, CodeTooManyFailures)

	// The next pepper: a key made with it works and is not moved.
	next, err := keystore.NewPeppers([]byte(newPepper), [][]byte{[]byte(testPepper)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nk, nrec, err := (&keystore.Lifecycle{Store: ts.store, Format: ts.format, Hasher: next.Current}).Create(context.Background(), "test", keystore.NewKeyParams{Name: "made with the new pepper"})
	if err != nil {
		t.Fatal(err)
	}
	h1 := provision(t, &Handler{Database: ts.dsn, Pepper: testPepper, NextPepper: newPepper})
	if s := serve(h1, newRequest("/", bearer(nk))); s.next == nil {
		t.Fatalf("a key made with the next pepper refused: %d", s.rec.Code)
	}
	time.Sleep(100 * time.Millisecond)
	if got, err := ts.store.Get(context.Background(), nrec.ID); err != nil || got.PepperID != next.Current.ID() {
		t.Fatalf("a key made with the next pepper was moved: %+v, %v", got, err)
	}
}

// TestPepperRotationSettings: the other peppers of a rotation are checked
// like the pepper, and need it.
func TestPepperRotationSettings(t *testing.T) {
	ts := newTestStore(t)
	for name, h := range map[string]*Handler{
		"weak previous":        {Database: ts.dsn, Pepper: newPepper, PreviousPeppers: []string{"password"}},
		"empty next":           {Database: ts.dsn, Pepper: newPepper, NextPepper: "{env.KEYGATE_TEST_UNSET_PEPPER}"},
		"same pepper twice":    {Database: ts.dsn, Pepper: newPepper, PreviousPeppers: []string{newPepper}},
		"previous, no pepper":  {Database: "postgres://127.0.0.1:1/x", PreviousPeppers: []string{testPepper}},
		"unregistered peppers": {Database: ts.dsn, Pepper: newPepper},
	} {
		err := tryProvision(h)
		h.Cleanup()
		if err == nil {
			t.Errorf("%s: provisioned", name)
			continue
		}
		for _, secret := range []string{newPepper, testPepper} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: the error holds a pepper: %v", name, err)
			}
		}
		t.Logf("%s: %v", name, err)
	}
}
