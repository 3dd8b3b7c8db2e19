package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// Step 1: find the key in the request's sources and check its form. A key
// that fails here never reaches a cache or a store. With legacy_keys, a
// key that is not in Keygate's format at all (an imported legacy key) has
// only its length and characters checked.

// findKey finds the request's key and parses it into x.parsed.
func (h *Handler) findKey(x *exchange) verdict {
	raw, src, found := extract(x.r, h.sources)
	switch found {
	case keyAbsent:
		if h.misplacedKey(x.r) {
			return verdict{problem: h.problems.wrongScheme, why: "API key in Authorization without the Bearer scheme"}
		}
		return verdict{problem: h.problems.missing, why: "no API key in request"}
	case keyAmbiguous:
		return verdict{problem: h.problems.invalid, failed: true, why: "API key source holds more than one value"}
	}
	if h.sources[src].From == FromCookie {
		if err := h.crossOrigin.Check(h.crossOriginRequest(x.r)); err != nil {
			return verdict{problem: h.problems.crossOrigin, why: "cross-origin request authenticated by a cookie", err: err}
		}
	}
	parsed, err := h.format.Parse(raw)
	if err != nil && h.LegacyKeys && h.format.IsLegacyCandidate(raw) {
		parsed, err = keystore.LegacyKey(raw), nil
	}
	if err != nil {
		// err names the failed check and never contains the key.
		return verdict{problem: h.problems.invalid, failed: true, why: "malformed API key", err: err}
	}
	x.parsed = parsed
	return verdict{}
}

// misplacedKey reports whether a request without a key sent one in
// Authorization in another form than "Bearer <key>" ("kg_…", "Token kg_…",
// "Bearer<TAB>kg_…") while the bearer source is configured: it deserves an
// answer that says how to send it, not "this API requires a key".
func (h *Handler) misplacedKey(r *http.Request) bool {
	if !slices.Contains(h.sources, KeySource{From: FromBearer}) {
		return false
	}
	marker := h.format.Prefix() + "_"
	for _, v := range r.Header["Authorization"] {
		// The prefix anywhere, or a whole key in any form (Basic with the
		// key as user name: curl -u "$KEY:").
		if strings.Contains(v, marker) || authorizationHasKey(v, h.format) {
			return true
		}
	}
	return false
}

// validateSources checks the key sources and the origins allowed to send
// cookie-authenticated requests, and fills in the default source.
func (h *Handler) validateSources() error {
	h.sources = h.Sources
	if len(h.sources) == 0 {
		h.sources = defaultSources
	}
	h.sources = append([]KeySource(nil), h.sources...)
	seen := map[KeySource]bool{}
	for i := range h.sources {
		if err := h.sources[i].validate(); err != nil {
			return err
		}
		if seen[h.sources[i]] {
			return fmt.Errorf("key source '%s' is listed twice", h.sources[i])
		}
		seen[h.sources[i]] = true
	}
	h.crossOrigin = nil
	for _, src := range h.sources {
		if src.From == FromCookie {
			h.crossOrigin = http.NewCrossOriginProtection()
		}
	}
	for _, o := range h.AllowedOrigins {
		if h.crossOrigin == nil {
			return fmt.Errorf("allowed_origins is only used with a cookie key source")
		}
		if err := h.crossOrigin.AddTrustedOrigin(o); err != nil {
			return fmt.Errorf("allowed_origins: %v", err)
		}
	}
	return nil
}
