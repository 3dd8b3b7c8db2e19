package caddymodule

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/signing"
)

// verifyToken checks tok as an upstream would, against the store's JWKS.
func verifyToken(t *testing.T, s keystore.SigningKeys, tok, audience string) signing.Claims {
	t.Helper()
	doc, err := signing.JWKS(context.Background(), s, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("parsing %q: %v", tok, err)
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in the JWKS", parsed.Headers[0].KeyID)
	}
	var c signing.Claims
	if err := parsed.Claims(keys[0].Key, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(jwt.Expected{Issuer: "keygate", AnyAudience: jwt.Audience{audience}, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIdentityJWT(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{Owner: "acme", Scopes: []string{"read"}})
	h := ts.handler(t, &Handler{IdentityJWT: &IdentityJWT{Audience: "legacy-api"}})

	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	r.Header.Set("X-Api-Key-Jwt", "forged.token.here")
	r.Header.Add("Connection", "X-Api-Key-Jwt")
	s := serve(h, r)
	if s.next == nil {
		t.Fatalf("not admitted: %d %s", s.rec.Code, s.rec.Body)
	}
	toks := s.next.Header.Values("X-Api-Key-Jwt")
	if len(toks) != 1 || toks[0] == "forged.token.here" {
		t.Fatalf("upstream got tokens %q", toks)
	}
	if strings.Contains(s.next.Header.Get("Connection"), "Jwt") {
		t.Fatalf("the client's Connection still names the token header: %q", s.next.Header.Get("Connection"))
	}
	c := verifyToken(t, ts.store, toks[0], "legacy-api")
	if c.Subject != rec.ID || c.Subject != s.next.Header.Get("X-Api-Key-Id") || c.Owner != "acme" || len(c.Scopes) != 1 {
		t.Fatalf("claims %+v", c)
	}
	if ttl := c.Expiry.Time().Sub(c.IssuedAt.Time()); ttl != defaultLifetime {
		t.Fatalf("lifetime %s, want %s", ttl, defaultLifetime)
	}
	// The next request reuses the token.
	r2 := httptest.NewRequest("GET", "/", nil)
	r2.Header.Set("Authorization", "Bearer "+key)
	if s2 := serve(h, r2); s2.next == nil || s2.next.Header.Get("X-Api-Key-Jwt") != toks[0] {
		t.Fatal("the token was not reused")
	}

	// Without identity_jwt, a client's token is removed all the same.
	plain := ts.handler(t, &Handler{})
	r3 := httptest.NewRequest("GET", "/", nil)
	r3.Header.Set("Authorization", "Bearer "+key)
	r3.Header.Set("X-Api-Key-Jwt", "forged.token.here")
	if s3 := serve(plain, r3); s3.next == nil || s3.next.Header.Get("X-Api-Key-Jwt") != "" {
		t.Fatal("a client's token reached the upstream without identity_jwt")
	}
}

func TestIdentityJWTConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  IdentityJWT
	}{
		{"no audience", IdentityJWT{}},
		{"short lifetime", IdentityJWT{Audience: "a", Lifetime: caddy.Duration(time.Second)}},
		{"long lifetime", IdentityJWT{Audience: "a", Lifetime: caddy.Duration(2 * time.Hour)}},
		{"long refresh", IdentityJWT{Audience: "a", Refresh: caddy.Duration(time.Hour)}},
		{"header is the id header", IdentityJWT{Audience: "a", Header: "X-Api-Key-Id"}},
		{"header is a key source", IdentityJWT{Audience: "a", Header: "Authorization"}},
		{"header off", IdentityJWT{Audience: "a", Header: "off"}},
	} {
		h := &Handler{IdentityJWT: &c.cfg}
		if err := h.validateConfig(); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	h := &Handler{IdentityJWT: &IdentityJWT{Audience: "a", Header: "x-identity"}}
	if err := h.validateConfig(); err != nil || h.jwtHeader != "X-Identity" {
		t.Fatalf("%v, header %q", err, h.jwtHeader)
	}
}

func TestIdentityJWTCaddyfile(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`api_key {
		identity_jwt {
			audience legacy-api
			header   X-Identity
			issuer   gw
			lifetime 2m
			refresh  10s
		}
	}`))
	want := IdentityJWT{Audience: "legacy-api", Header: "X-Identity", Issuer: "gw",
		Lifetime: caddy.Duration(2 * time.Minute), Refresh: caddy.Duration(10 * time.Second)}
	if err != nil || h.IdentityJWT == nil || *h.IdentityJWT != want {
		t.Fatalf("%+v, %v", h.IdentityJWT, err)
	}
	for _, bad := range []string{
		"api_key {\n identity_jwt\n}",
		"api_key {\n identity_jwt aud\n}",
		"api_key {\n identity_jwt {\n audience a\n bogus 1\n }\n}",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestJWKSHandler(t *testing.T) {
	ts := newTestStore(t)
	ts.handler(t, &Handler{IdentityJWT: &IdentityJWT{Audience: "a"}}) // makes the first key
	j := &JWKSHandler{Database: ts.dsn}
	ctx, cancel := testContext(t, nil)
	if err := j.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); j.Cleanup() })
	w := httptest.NewRecorder()
	if err := j.ServeHTTP(w, httptest.NewRequest("GET", "/.well-known/jwks.json", nil), nil); err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 || !set.Keys[0].IsPublic() {
		t.Fatalf("JWKS %s: %v", w.Body, err)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=15" {
		t.Fatalf("Cache-Control %q", cc)
	}
	if err := j.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil), nil); err == nil {
		t.Fatal("POST answered")
	}
}

// TestIdentityJWTAuthServer: an auth_server with identity_jwt answers
// with the signed token in its header, for the proxy to copy onto the
// request it forwards, as the headers of the key's identity.
func TestIdentityJWTAuthServer(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{Owner: "acme"})
	h := ts.handler(t, &Handler{AuthServer: true, IdentityJWT: &IdentityJWT{Audience: "legacy-api", Header: "X-Identity"}})
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	s := serve(h, r)
	if s.rec.Code != 200 || s.next != nil {
		t.Fatalf("auth_server answer: %d (next called: %v)", s.rec.Code, s.next != nil)
	}
	toks := s.rec.Header().Values("X-Identity")
	if len(toks) != 1 {
		t.Fatalf("answer carries tokens %q, want one", toks)
	}
	if c := verifyToken(t, ts.store, toks[0], "legacy-api"); c.Subject != rec.ID || c.Owner != "acme" {
		t.Fatalf("claims %+v", c)
	}
}
