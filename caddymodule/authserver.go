package caddymodule

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// The auth_server mode: Keygate as the authentication service another
// proxy asks before it forwards a request. The pipeline is the same up to
// the last step; instead of calling the next handler with identity request
// headers, the handler answers 200 with the identity in response headers,
// which the proxy copies onto the request it forwards. Refusals are the
// ordinary problem+json answers, which the proxies pass to the client.

// scopesHeader carries an admitted key's scopes, comma-separated, in
// auth_server answers.
const scopesHeader = "X-Api-Key-Scopes"

// forwardedMethodHeader is the original request's method, sent by
// forward_auth and Traefik (the auth request itself is a GET).
const forwardedMethodHeader = "X-Forwarded-Method"

// answer writes the auth_server answer for an admitted key. The owner and
// scopes headers are sent even when empty: a proxy that copies a header
// from the answer then replaces a value the client sent instead of
// letting it through. With identity_jwt, the signed token is in its
// header too. The key itself is never in the answer.
func (h *Handler) answer(w http.ResponseWriter, key *keystore.Key, tok string) {
	hdr := w.Header()
	for _, name := range h.identityNames {
		hdr.Del(name)
	}
	if tok != "" {
		hdr.Set(h.jwtHeader, tok)
	}
	if h.idHeader != "" {
		hdr.Set(h.idHeader, key.ID)
	}
	if h.ownerHeader != "" {
		hdr.Set(h.ownerHeader, key.Owner)
	}
	hdr.Set(scopesHeader, strings.Join(key.Scopes, ","))
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// crossOriginRequest is what the cookie check looks at. An auth_server
// sees the proxy's auth request, a GET for forward_auth and Traefik; the
// method the client used is in X-Forwarded-Method. A browser cannot send
// that header cross-site without a CORS preflight, so it cannot lower a
// POST to a GET.
func (h *Handler) crossOriginRequest(r *http.Request) *http.Request {
	if !h.AuthServer {
		return r
	}
	m := r.Header.Get(forwardedMethodHeader)
	if m == "" || m == r.Method {
		return r
	}
	c := *r
	c.Method = m
	return &c
}

// validateAuthServer checks that the identity headers of an auth_server
// answer are distinct (after validateIdentity).
func (h *Handler) validateAuthServer() error {
	if !h.AuthServer {
		return nil
	}
	for _, n := range []string{h.idHeader, h.ownerHeader} {
		if n == scopesHeader {
			return fmt.Errorf("auth_server answers with the key's scopes in %s; id_header and owner_header must name other headers", scopesHeader)
		}
	}
	return nil
}
