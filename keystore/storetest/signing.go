package storetest

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/signing"
)

func sealer(t *testing.T, pepper []byte) *signing.Sealer {
	t.Helper()
	h, err := keystore.NewHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSealer(h)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The first key is made once; a rotation publishes the new key at once,
// makes it the signer at its activation, keeps the old one published
// until it retires, and records both changes without a private key.
func testSigningKeysRotate(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn := kind.NewDSN(t)
	s := Open(t, dsn, keystore.Options{PepperCheck: Hasher(t).PepperCheck()})
	seal := sealer(t, testPepper)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

	first, err := signing.Ensure(ctx, s, seal, t0)
	if err != nil {
		t.Fatal(err)
	}
	again, err := signing.Ensure(ctx, s, seal, t0.Add(time.Minute))
	if err != nil || again.KID != first.KID {
		t.Fatalf("second Ensure: %v, %v; want the first key %s", again, err, first.KID)
	}
	clock := t0
	ring := signing.NewKeyring(s, seal, func() time.Time { return clock })
	if err := ring.Refresh(ctx); err != nil || ring.Signer().KID != first.KID {
		t.Fatalf("signer %v, %v; want %s", ring.Signer(), err, first.KID)
	}

	t1 := t0.Add(10 * time.Minute)
	next, prev, err := signing.Rotate(ctx, s, seal, "cli:alice", t1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if prev == nil || prev.KID != first.KID || !prev.RetiresAt.Equal(next.ActivatedAt.Add(signing.RetireAfter)) {
		t.Fatalf("rotation replaced %+v; want %s retiring %s after %s", prev, first.KID, signing.RetireAfter, next.ActivatedAt)
	}
	kids := func(at time.Time, all bool) []string {
		keys, err := s.SigningKeys(ctx, at, all)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range keys {
			out = append(out, k.KID)
		}
		return out
	}
	if got := kids(t1, false); len(got) != 2 || got[0] != next.KID || got[1] != first.KID {
		t.Fatalf("published after the rotation: %v; want [%s %s]", got, next.KID, first.KID)
	}
	// Before its activation the new key is published, not signing.
	clock = t1.Add(30 * time.Second)
	if err := ring.Refresh(ctx); err != nil || ring.Signer().KID != first.KID {
		t.Fatalf("signer before activation %v, %v; want %s", ring.Signer(), err, first.KID)
	}
	clock = t1.Add(time.Minute)
	if err := ring.Refresh(ctx); err != nil || ring.Signer().KID != next.KID {
		t.Fatalf("signer at activation %v, %v; want %s", ring.Signer(), err, next.KID)
	}
	jwks, err := signing.JWKS(ctx, s, clock)
	if err != nil || !strings.Contains(string(jwks), first.KID) || !strings.Contains(string(jwks), next.KID) || strings.Contains(string(jwks), `"d"`) {
		t.Fatalf("JWKS during the overlap: %s, %v", jwks, err)
	}
	retired := prev.RetiresAt
	if got := kids(retired, false); len(got) != 1 || got[0] != next.KID {
		t.Fatalf("published once the old key retired: %v; want [%s]", got, next.KID)
	}
	if got := kids(retired, true); len(got) != 2 {
		t.Fatalf("all keys: %v; want both", got)
	}

	var evs []*audit.Event
	for _, e := range events(t, s, audit.Filter{}) {
		evs = append(evs, e)
	}
	if len(evs) != 2 || evs[0].Action != audit.ActionSigningKeyCreate || evs[0].Actor != signing.EnsureActor || evs[0].KeyID != first.KID ||
		evs[1].Action != audit.ActionSigningKeyRotate || evs[1].Actor != "cli:alice" || evs[1].KeyID != next.KID ||
		!strings.Contains(evs[1].Before, first.KID) {
		b, _ := json.Marshal(evs)
		t.Fatalf("audit events: %s", b)
	}
	if _, err := keystore.VerifyAudit(ctx, s, nil); err != nil {
		t.Fatal(err)
	}

	// No private key at rest, in any encoding.
	dump := kind.Dump(t, dsn)
	for _, k := range []*keystore.SigningKey{first, next} {
		priv, err := seal.Open(k)
		if err != nil {
			t.Fatal(err)
		}
		seed := priv.Seed()
		for _, enc := range []string{string(seed), hex.EncodeToString(seed), base64.StdEncoding.EncodeToString(seed),
			base64.RawURLEncoding.EncodeToString(seed), base64.RawURLEncoding.EncodeToString(priv)} {
			if strings.Contains(dump, enc) || strings.Contains(string(jwks), enc) || strings.Contains(evs[0].After+evs[1].Before+evs[1].After, enc) {
				t.Fatalf("the private key of %s is in the store dump, the JWKS or the audit trail", k.KID)
			}
		}
	}
}

// A process with another pepper opens no private key and rotates none.
func testSigningKeysWrongPepper(t *testing.T, kind Backend) {
	ctx := Context(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{})
	k, err := signing.Ensure(ctx, s, sealer(t, testPepper), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other := sealer(t, otherPepper)
	if _, err := other.Open(k); err == nil {
		t.Fatal("a private key opened with another pepper")
	}
	if err := signing.NewKeyring(s, other, nil).Refresh(ctx); err == nil {
		t.Fatal("a keyring with another pepper loaded a key")
	}
	if _, _, err := signing.Rotate(ctx, s, other, "cli:mallory", time.Now(), 0); err == nil {
		t.Fatal("a rotation with another pepper succeeded")
	}
	// A sealed key copied to another row does not open either.
	moved := *k
	moved.KID = "kg-other"
	if _, err := sealer(t, testPepper).Open(&moved); err == nil {
		t.Fatal("a sealed private key opened under another kid")
	}
}

// Gateways that start at once on a store without a signing key agree on
// one.
func testSigningKeysConcurrentFirstStart(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn := kind.NewDSN(t)
	Open(t, dsn, keystore.Options{}) // migrated
	const n = 8
	stores := make([]keystore.Store, n)
	for i := range stores {
		stores[i] = Open(t, dsn, keystore.Options{})
	}
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			ring := signing.NewKeyring(stores[i], sealer(t, testPepper), nil)
			if errs[i] = ring.Refresh(ctx); errs[i] == nil {
				got[i] = ring.Signer().KID
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != got[0] {
			t.Fatalf("gateway %d: %q, %v; gateway 0: %q", i, got[i], errs[i], got[0])
		}
	}
	all, err := stores[0].SigningKeys(ctx, time.Now(), true)
	if err != nil || len(all) != 1 {
		t.Fatalf("%d signing keys, %v; want 1", len(all), err)
	}
	if evs := events(t, stores[0], audit.Filter{}); len(evs) != 1 {
		t.Fatalf("%d audit events, want 1 (the one key made)", len(evs))
	}
}
