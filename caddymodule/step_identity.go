package caddymodule

import (
	"fmt"
	"net/http"
	"net/textproto"
	"slices"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
)

// The last step: the request goes on without its key and with the key's
// identity, in headers the client cannot set or smuggle, in placeholders
// and in the access log.

// admit removes the key from the request and sets the trusted identity:
// headers, the signed token tok (if identity_jwt is on), placeholders
// (answered from a, see keyRequest.placeholder) and the access log field.
func (h *Handler) admit(r *http.Request, a *keyRequest, tok string) {
	key := a.key
	strip(r, h.sources)
	stripAuthorizationKeys(r, h.format)
	stripQueryKeys(r, h.format)
	for _, name := range h.identityNames {
		delete(r.Header, name) // canonical (validateIdentity), as Del would make it
	}
	// The names are canonical (validateIdentity), as Header.Set would
	// make them; the values live in the keyRequest.
	if h.idHeader != "" {
		r.Header[h.idHeader] = a.value(key.ID)
	}
	if h.ownerHeader != "" && key.Owner != "" {
		r.Header[h.ownerHeader] = a.value(key.Owner)
	}
	h.setIdentityToken(r, tok)
	// reverse_proxy deletes the headers a client names in Connection, after
	// this handler ran, and forwards request trailers.
	keepFromConnection(r, h.identityNames)
	guardTrailers(r, h.trailerBlocked)
	a.admitted = true
	if !accessLogged(r) {
		return
	}
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.String("api_key_id", key.ID))
	}
}

// accessLogged tells whether the request's server may write an access
// log line, which is what the api_key_id field is for: without access
// logs the field is not added, saving its allocation on every request.
func accessLogged(r *http.Request) bool {
	s, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return !ok || s.Logs != nil
}

// validateIdentity checks the identity header names (after the sources:
// a header cannot be both) and lists the headers a client must never
// set or send as a trailer.
func (h *Handler) validateIdentity() error {
	var err error
	if h.idHeader, err = identityHeader("id_header", h.IDHeader, defaultIDHeader, h.sources); err != nil {
		return err
	}
	if h.ownerHeader, err = identityHeader("owner_header", h.OwnerHeader, defaultOwnerHeader, h.sources); err != nil {
		return err
	}
	if h.idHeader != "" && h.idHeader == h.ownerHeader {
		return fmt.Errorf("id_header and owner_header are both %s", h.idHeader)
	}
	if err := h.validateIdentityJWT(); err != nil {
		return err
	}
	// The default names are removed from every request even when renamed
	// or off: an upstream may still trust them.
	h.identityNames = nil
	for _, n := range append([]string{defaultIDHeader, defaultOwnerHeader, h.idHeader, h.ownerHeader}, h.jwtHeaderNames()...) {
		if n != "" && !slices.Contains(h.identityNames, n) {
			h.identityNames = append(h.identityNames, n)
		}
	}
	h.trailerBlocked = append([]string{"Authorization"}, h.identityNames...)
	for _, src := range h.sources {
		switch src.From {
		case FromHeader:
			h.trailerBlocked = append(h.trailerBlocked, src.Name)
		case FromCookie:
			h.trailerBlocked = append(h.trailerBlocked, "Cookie")
		}
	}
	return nil
}

func identityHeader(field, v, def string, sources []KeySource) (string, error) {
	switch v {
	case "":
		v = def
	case "-", "off":
		// "off" as in the Caddyfile; no header is named Off.
		return "", nil
	}
	if !httpguts.ValidHeaderFieldName(v) {
		return "", fmt.Errorf("%s %q is not a valid header name", field, v)
	}
	v = textproto.CanonicalMIMEHeaderKey(v)
	for _, s := range sources {
		if (s.From == FromHeader && s.Name == v) || (s.From == FromBearer && v == "Authorization") {
			return "", fmt.Errorf("%s %s is also a key source", field, v)
		}
	}
	return v, nil
}
