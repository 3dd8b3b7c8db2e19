package signing_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keygate/keygate/keystore"
	_ "github.com/keygate/keygate/keystore/sqlite"
	"github.com/keygate/keygate/signing"
)

const pepper = "f099aeadf53a609f00758a43d0b7f0450c86ee050e6dbc3f86c94dee1e9b81aa"

func setup(t testing.TB, now *time.Time) (keystore.Store, *signing.Sealer, *signing.Keyring) {
	t.Helper()
	s, err := keystore.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "keys.db"), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	h, _ := keystore.NewHasher([]byte(pepper))
	seal, err := signing.NewSealer(h)
	if err != nil {
		t.Fatal(err)
	}
	ring := signing.NewKeyring(s, seal, func() time.Time { return *now })
	if err := ring.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, seal, ring
}

// verify checks tok against the store's JWKS as an upstream would.
func verify(t *testing.T, s keystore.Store, tok string, at time.Time) signing.Claims {
	t.Helper()
	doc, err := signing.JWKS(context.Background(), s, at)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %s not in the JWKS %s", parsed.Headers[0].KeyID, doc)
	}
	var c signing.Claims
	if err := parsed.Claims(keys[0].Key, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: "keygate", AnyAudience: jwt.Audience{"legacy-api"}, Time: at}, 0); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssuerClaimsAndCache(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s, seal, ring := setup(t, &now)
	iss, err := signing.NewIssuer(signing.Config{Issuer: "keygate", Audience: "legacy-api", Lifetime: time.Minute}, ring)
	if err != nil {
		t.Fatal(err)
	}
	key := &keystore.Key{ID: "AbCdEfGhIjKl", Owner: "acme", Scopes: []string{"read", "write"}}
	tok, err := iss.Token(key, now)
	if err != nil {
		t.Fatal(err)
	}
	c := verify(t, s, tok, now)
	if c.Subject != key.ID || c.Owner != "acme" || !slices.Equal(c.Scopes, key.Scopes) || c.ID == "" ||
		c.Expiry.Time().Sub(c.IssuedAt.Time()) != time.Minute || !c.IssuedAt.Time().Equal(now) {
		t.Fatalf("claims %+v", c)
	}
	// Reused while more than half the lifetime is left.
	if again, _ := iss.Token(key, now.Add(29*time.Second)); again != tok {
		t.Fatal("token not reused within half its lifetime")
	}
	fresh, _ := iss.Token(key, now.Add(30*time.Second))
	if fresh == tok {
		t.Fatal("token reused past half its lifetime")
	}
	// A changed owner or scopes is signed anew.
	changed := *key
	changed.Scopes = []string{"read"}
	if tok2, _ := iss.Token(&changed, now.Add(31*time.Second)); tok2 == fresh || !slices.Equal(verify(t, s, tok2, now.Add(31*time.Second)).Scopes, []string{"read"}) {
		t.Fatal("a token with old scopes was reused")
	}
	// A rotation: the next token is signed with the new key, and the old
	// token still verifies during the overlap.
	next, _, err := signing.Rotate(context.Background(), s, seal, "cli:test", now, 0)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(40 * time.Second)
	if err := ring.Refresh(context.Background()); err != nil || ring.Signer().KID != next.KID {
		t.Fatalf("signer %v, %v", ring.Signer(), err)
	}
	rotated, _ := iss.Token(&changed, now)
	if parsed, _ := jwt.ParseSigned(rotated, []jose.SignatureAlgorithm{jose.EdDSA}); parsed.Headers[0].KeyID != next.KID {
		t.Fatalf("token after the rotation signed with %s, want %s", parsed.Headers[0].KeyID, next.KID)
	}
	verify(t, s, rotated, now)
	verify(t, s, fresh, now)
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []signing.Config{
		{Issuer: "keygate", Audience: "", Lifetime: time.Minute},
		{Issuer: "", Audience: "a", Lifetime: time.Minute},
		{Issuer: "keygate", Audience: "a", Lifetime: 9 * time.Second},
		{Issuer: "keygate", Audience: "a", Lifetime: 2 * time.Hour},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// BenchmarkIssuer: a cached token (most requests), and a token signed
// anew (once per key per half lifetime).
func BenchmarkIssuer(b *testing.B) {
	now := time.Now()
	_, _, ring := setup(b, &now)
	iss, _ := signing.NewIssuer(signing.Config{Issuer: "keygate", Audience: "legacy-api", Lifetime: time.Minute}, ring)
	key := &keystore.Key{ID: "AbCdEfGhIjKl", Owner: "acme", Scopes: []string{"read"}}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := iss.Token(key, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		iss, _ := signing.NewIssuer(signing.Config{Issuer: "keygate", Audience: "legacy-api", Lifetime: time.Minute}, ring)
		b.ReportAllocs()
		t := now
		for b.Loop() {
			t = t.Add(time.Minute)
			if _, err := iss.Token(key, t); err != nil {
				b.Fatal(err)
			}
		}
	})
}
