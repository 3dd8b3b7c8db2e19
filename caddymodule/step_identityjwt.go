package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/signing"
)

// Part of the identity step: the signed identity token (JWT) an upstream
// verifies with the store's JWKS instead of trusting the network. Signing
// and caching live in package signing; see docs/signed-identity.md.

// IdentityJWT sends the upstream, beside the plain identity headers, a
// short-lived JWT signed (EdDSA) with the store's current signing key:
// iss, sub (the key id), aud, iat, exp, jti, owner and scopes. A
// client-sent header of its name is always removed. The first gateway to
// start with it on a store creates the signing key; `caddy api-key
// signing-key rotate` replaces it.
type IdentityJWT struct {
	// Header carries the token. Default: X-Api-Key-Jwt.
	Header string `json:"header,omitempty"`
	// Audience is the aud claim: the name the upstream checks tokens are
	// meant for. Required, so that a token one upstream receives cannot
	// be replayed to another that trusts the same keys.
	Audience string `json:"audience,omitempty"`
	// Issuer is the iss claim. Default: keygate.
	Issuer string `json:"issuer,omitempty"`
	// Lifetime is how long a token is valid, 10s to 1h. Each key's token
	// is reused until less than half of it is left. Default: 60s.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
	// Refresh is how often the gateway reads the signing keys to pick up
	// a rotation, 1s to 5m. Default: 30s.
	Refresh caddy.Duration `json:"refresh,omitempty"`
}

const (
	defaultJWTHeader = "X-Api-Key-Jwt"
	defaultIssuer    = "keygate"
	defaultLifetime  = time.Minute
	minRefresh       = time.Second
)

func (c *IdentityJWT) config() signing.Config {
	cfg := signing.Config{Issuer: c.Issuer, Audience: c.Audience, Lifetime: time.Duration(c.Lifetime)}
	if cfg.Issuer == "" {
		cfg.Issuer = defaultIssuer
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = defaultLifetime
	}
	return cfg
}

func (c *IdentityJWT) refresh() time.Duration {
	if c.Refresh == 0 {
		return signing.DefaultRefresh
	}
	return time.Duration(c.Refresh)
}

// validateIdentityJWT checks identity_jwt (after the identity headers,
// whose names it must not take).
func (h *Handler) validateIdentityJWT() error {
	c := h.IdentityJWT
	if c == nil {
		return nil
	}
	if err := c.config().Validate(); err != nil {
		return fmt.Errorf("identity_jwt: %v", err)
	}
	if r := c.refresh(); r < minRefresh || r > signing.MaxRefresh {
		return fmt.Errorf("identity_jwt: refresh %s is not between %s and %s", r, minRefresh, signing.MaxRefresh)
	}
	name, err := identityHeader("identity_jwt header", c.Header, defaultJWTHeader, h.sources)
	if err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("identity_jwt: the header cannot be off; remove identity_jwt instead")
	}
	if name == h.idHeader || name == h.ownerHeader {
		return fmt.Errorf("identity_jwt header %s is also an identity header", name)
	}
	h.jwtHeader = name
	return nil
}

// provisionIdentityJWT takes this store's keyring (loading the signing
// key, or creating the first one) and makes the handler's issuer. A store
// that cannot be read now is not an error: requests get 503 until the
// keyring has a key.
func (h *Handler) provisionIdentityJWT(ctx context.Context, app *App) error {
	if h.IdentityJWT == nil {
		return nil
	}
	ring, key, err := app.acquireKeyring(ctx, h.poolKey.store, h.hasher, h.IdentityJWT.refresh())
	if err != nil {
		return fmt.Errorf("identity_jwt: %w", err)
	}
	h.keyring, h.keyringKey = ring, key
	if h.issuer, err = signing.NewIssuer(h.IdentityJWT.config(), ring.Keyring); err != nil {
		return fmt.Errorf("identity_jwt: %v", err)
	}
	return nil
}

// identityToken returns the request's signed identity token ("" without
// identity_jwt), or a refusal when no signing key is loaded.
func (h *Handler) identityToken(x *exchange) (string, verdict) {
	if h.issuer == nil {
		return "", verdict{}
	}
	tok, err := h.issuer.Token(x.key, x.now)
	if err != nil {
		// The keyring logs why it has no key, once per refresh; a line
		// per request would flood the log.
		return "", verdict{problem: h.problems.unavailable, why: "identity token not signed", err: err}
	}
	return tok, verdict{}
}

// jwtHeaderNames are the token headers a client must never send: the
// configured one and the default, which an upstream may still trust.
func (h *Handler) jwtHeaderNames() []string {
	names := []string{defaultJWTHeader}
	if h.jwtHeader != "" && !slices.Contains(names, h.jwtHeader) {
		names = append(names, h.jwtHeader)
	}
	return names
}

// setIdentityToken puts tok on the request (client copies are gone by
// then, see admit).
func (h *Handler) setIdentityToken(r *http.Request, tok string) {
	if tok != "" {
		r.Header.Set(h.jwtHeader, tok)
	}
}
