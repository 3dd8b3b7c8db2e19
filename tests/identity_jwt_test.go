package tests

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/signing"
)

// jwtUpstream is a legacy upstream that trusts nothing but the identity
// token: it fetches the gateway's JWKS (again when a token names a kid it
// does not know) and verifies every request's token.
type jwtUpstream struct {
	*httptest.Server
	jwksURL string

	mu   sync.Mutex
	keys jose.JSONWebKeySet
	seen []verifiedToken
}

type verifiedToken struct {
	raw, kid string
	claims   signing.Claims
	err      error
	keyID    string // X-Api-Key-Id beside it
}

func newJWTUpstream(t *testing.T) *jwtUpstream {
	u := &jwtUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := verifiedToken{raw: r.Header.Get("X-Api-Key-Jwt"), keyID: r.Header.Get("X-Api-Key-Id")}
		v.kid, v.claims, v.err = u.verify(v.raw)
		u.mu.Lock()
		u.seen = append(u.seen, v)
		u.mu.Unlock()
		if v.err != nil {
			http.Error(w, v.err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, upstreamBody)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *jwtUpstream) fetch() error {
	res, err := http.Get(u.jwksURL)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("JWKS: status %d", res.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		return err
	}
	u.mu.Lock()
	u.keys = set
	u.mu.Unlock()
	return nil
}

// verify checks a token's signature, iss, aud, exp and sub, fetching the
// JWKS again for a kid it does not know.
func (u *jwtUpstream) verify(raw string) (string, signing.Claims, error) {
	var c signing.Claims
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return "", c, err
	}
	kid := tok.Headers[0].KeyID
	u.mu.Lock()
	keys := u.keys.Key(kid)
	u.mu.Unlock()
	if len(keys) == 0 {
		if err := u.fetch(); err != nil {
			return kid, c, err
		}
		u.mu.Lock()
		keys = u.keys.Key(kid)
		u.mu.Unlock()
	}
	if len(keys) == 0 {
		return kid, c, fmt.Errorf("kid %s is not in the JWKS", kid)
	}
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		return kid, c, err
	}
	return kid, c, c.ValidateWithLeeway(jwt.Expected{Issuer: "keygate", AnyAudience: jwt.Audience{"legacy-api"}, Time: time.Now()}, 5*time.Second)
}

func (u *jwtUpstream) last(t *testing.T) verifiedToken {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the upstream got no request")
	}
	return u.seen[len(u.seen)-1]
}

// TestIdentityJWTThroughCaddy: on both stores, an upstream verifies each
// request's token with the JWKS the gateway serves (api_key_jwks); a
// client's own token never reaches it; after `signing-key rotate` the
// gateway signs with the new key, which the upstream fetches on its
// unknown kid, and a token signed before the rotation still verifies;
// the store holds no private key in plaintext.
func TestIdentityJWTThroughCaddy(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newJWTUpstream(t)
		k := sb.createKey("legacy", "--owner", "acme", "--scopes", "read,write")
		g := newGateway(t, sb)
		up.jwksURL = g.url + "/.well-known/jwks.json"
		g.start(g.site(fmt.Sprintf("\tapi_key_jwks /.well-known/jwks.json\n"+
			"\tapi_key {\n\t\t%s\n\t\tidentity_jwt {\n\t\t\taudience legacy-api\n\t\t\trefresh 1s\n\t\t}\n\t}\n\treverse_proxy %s",
			sb.storeOptions(), strings.TrimPrefix(up.URL, "http://"))))

		jwks := get(t, up.jwksURL)
		wantStatus(t, "JWKS without a key", jwks, http.StatusOK)
		if cc := jwks.header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=") {
			t.Errorf("JWKS Cache-Control %q", cc)
		}

		r := get(t, g.url+"/orders", "Authorization", "Bearer "+k.Key, "X-Api-Key-Jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.")
		wantStatus(t, "a valid key with a client-sent token", r, http.StatusOK)
		before := up.last(t)
		if before.err != nil {
			t.Fatalf("the upstream could not verify the token: %v", before.err)
		}
		if before.raw == "" || strings.HasPrefix(before.raw, "eyJhbGciOiJub25lIn0") {
			t.Fatalf("the upstream got the client's token %q", before.raw)
		}
		if c := before.claims; c.Subject != k.ID || before.keyID != k.ID || c.Owner != "acme" || strings.Join(c.Scopes, ",") != "read,write" {
			t.Fatalf("claims %+v beside X-Api-Key-Id %q, want sub %s", c, before.keyID, k.ID)
		}

		rot := sb.mustCLI("signing-key", "rotate", "--activate-in", "0s", "--actor", "ops:e2e", "--json")
		var rotated struct {
			Key      struct{ KID string } `json:"key"`
			Replaced struct{ KID string } `json:"replaced"`
		}
		if err := json.Unmarshal([]byte(rot.stdout), &rotated); err != nil || rotated.Replaced.KID != before.kid {
			t.Fatalf("rotate printed %s (%v); want it to replace %s", rot.stdout, err, before.kid)
		}
		ok, took := pollUntil(15*time.Second, 100*time.Millisecond, func() bool {
			wantStatus(t, "during the rotation", bearer(t, g.url+"/", k.Key), http.StatusOK)
			return up.last(t).kid == rotated.Key.KID
		})
		if !ok {
			t.Fatalf("the gateway still signs with %s 15s after the rotation", up.last(t).kid)
		}
		t.Logf("rotation picked up after %v", took)
		if after := up.last(t); after.err != nil || after.claims.Subject != k.ID {
			t.Fatalf("token signed with the new key: %+v", after)
		}
		// The token from before the rotation still verifies, against the
		// JWKS as it is now.
		if err := up.fetch(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := up.verify(before.raw); err != nil {
			t.Fatalf("a token signed before the rotation no longer verifies: %v", err)
		}
		if list := sb.mustCLI("signing-key", "list"); !containsAll(list.stdout, before.kid, rotated.Key.KID, "signing", "retiring") {
			t.Errorf("signing-key list:\n%s", list.stdout)
		}
		if res := sb.mustCLI("audit"); !containsAll(res.stdout, "signing_key_create", "signing_key_rotate", "ops:e2e") {
			t.Errorf("audit:\n%s", res.stdout)
		}

		// No private key in the store, in any encoding.
		pepper := sb.pepper
		if sb.kind == sqliteStore {
			p, err := keystore.ReadPepperFile(keystore.PepperFileFor(sb.sqlitePath()))
			if err != nil {
				t.Fatal(err)
			}
			pepper = string(p)
		}
		seeds := privateSeeds(t, sb, pepper)
		dump := sb.dump(g)
		if !strings.Contains(dump, rotated.Key.KID) {
			t.Fatal("the dump lacks the signing key's kid: is it the right database?")
		}
		for _, seed := range seeds {
			for _, enc := range []string{string(seed), hex.EncodeToString(seed), base64.StdEncoding.EncodeToString(seed), base64.RawURLEncoding.EncodeToString(seed)} {
				if strings.Contains(dump, enc) {
					t.Fatal("the store dump holds a private signing key")
				}
			}
		}
	})
}

// privateSeeds opens every signing key of the sandbox's store with pepper.
func privateSeeds(t *testing.T, sb *sandbox, pepper string) [][]byte {
	t.Helper()
	dsn := sb.dsn
	if sb.kind == sqliteStore {
		dsn = "sqlite:" + sb.sqlitePath()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := keystore.Open(ctx, dsn, keystore.Options{MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := keystore.NewHasher([]byte(pepper))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := signing.NewSealer(h)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.SigningKeys(ctx, time.Now(), true)
	if err != nil || len(keys) < 2 {
		t.Fatalf("%d signing keys, %v", len(keys), err)
	}
	var seeds [][]byte
	for _, k := range keys {
		priv, err := sealer.Open(k)
		if err != nil {
			t.Fatal(errors.Join(fmt.Errorf("opening %s", k.KID), err))
		}
		seeds = append(seeds, priv.Seed())
	}
	return seeds
}
