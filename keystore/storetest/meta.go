package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
)

func testStorePepperCheck(t *testing.T, kind Backend) {
	dsn := kind.NewDSN(t)
	h := Hasher(t)
	Open(t, dsn, keystore.Options{PepperCheck: h.PepperCheck()}).Close()
	// Without a pepper (list, show, revoke) the store opens.
	Open(t, dsn, keystore.Options{}).Close()
	other, err := keystore.NewHasher(otherPepper)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.Open(Context(t), dsn, keystore.Options{PepperCheck: other.PepperCheck()}); !errors.Is(err, keystore.ErrPepperMismatch) {
		t.Fatalf("Open with another pepper: %v", err)
	}
	Open(t, dsn, keystore.Options{PepperCheck: h.PepperCheck()})
}

// testStorePepperCheckCorrupt: a pepper check row that is not a digest
// (damaged by hand or by a tool) makes the store unusable with an error
// that says so, on both backends and at once, never a panic and never
// "wrong pepper".
func testStorePepperCheckCorrupt(t *testing.T, kind Backend) {
	dsn := kind.NewDSN(t)
	h := Hasher(t)
	Open(t, dsn, keystore.Options{PepperCheck: h.PepperCheck()}).Close()
	kind.Exec(t, dsn, "UPDATE keygate_meta SET value = "+kind.Bytes([]byte{1})+" WHERE name = 'pepper_check'")
	_, err := keystore.Open(Context(t), dsn, keystore.Options{PepperCheck: h.PepperCheck()})
	if !errors.Is(err, keystore.ErrPepperCheckCorrupt) || errors.Is(err, keystore.ErrPepperMismatch) {
		t.Fatalf("Open with a corrupt pepper check row: %v", err)
	}
	want := "the pepper check value stored in keygate_meta is corrupt (1 bytes, want 32)"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if !keystore.Permanent(err) {
		t.Fatal("a corrupt pepper check row is not a permanent error")
	}
}

func testStorePrefixes(t *testing.T, kind Backend) {
	ctx := Context(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{})
	if p, err := s.Prefixes(ctx); err != nil || len(p) != 0 {
		t.Fatalf("Prefixes of a new store: %v, %v", p, err)
	}
	start := time.Now().Add(-time.Second)
	for _, p := range []string{"kg", "acme_live", "kg"} {
		if err := s.AcceptPrefix(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Prefixes(ctx)
	if err != nil || len(p) != 2 || p[0].Prefix != "acme_live" || p[1].Prefix != "kg" || p[0].At.Before(start) || p[1].At.Before(p[0].At) {
		t.Fatalf("Prefixes: %+v, %v", p, err)
	}
}

// testStoreResetPepperCheck: a mistyped first pepper can be forgotten
// while no key depends on it, and only then.
func testStoreResetPepperCheck(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn := kind.NewDSN(t)
	wrong := Hasher(t)
	right, err := keystore.NewHasher(otherPepper)
	if err != nil {
		t.Fatal(err)
	}
	Open(t, dsn, keystore.Options{PepperCheck: wrong.PepperCheck()}).Close()
	if _, err := keystore.Open(ctx, dsn, keystore.Options{PepperCheck: right.PepperCheck()}); !errors.Is(err, keystore.ErrPepperMismatch) {
		t.Fatalf("a second pepper: %v", err)
	}
	s := Open(t, dsn, keystore.Options{})
	if err := s.ResetPepperCheck(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = Open(t, dsn, keystore.Options{PepperCheck: right.PepperCheck()})
	if _, _, err := testkeys.Issue(ctx, s, Format(t, ""), right, keystore.NewKeyParams{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetPepperCheck(ctx); !errors.Is(err, keystore.ErrStoreNotEmpty) {
		t.Fatalf("reset with a key in the store: %v, want ErrStoreNotEmpty", err)
	}
	s.Close()
	Open(t, dsn, keystore.Options{PepperCheck: right.PepperCheck()}).Close()
}
