package caddymodule

import (
	"net/http"
	"strconv"
	"strings"
	"unsafe"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/ratelimit"
)

// keyRequest is what the handler learned about a request whose key the
// store knows, held in one allocation for the rest of the request: the
// usage meter wrapping the response, the key, the figures of its limits,
// and the storage of the header values the handler sets. The placeholders
// ({http.auth.user.id}, {api_key.*}) are computed from it only when
// something asks for them: Caddy calls placeholder through the provider
// that ServeHTTP registers once per request, instead of the handler
// storing a dozen strings in the replacer's map on every request.
type keyRequest struct {
	meter // usage metering's view of the response; unused with metering off

	key      *keystore.Key
	admitted bool // identity placeholders answer only once the key is admitted
	// superseded is set when a later api_key handler on the same request
	// registered its own: Caddy asks providers in order, so this one
	// stops answering.
	superseded bool

	rate      ratelimit.Policy // the key's rate limit, when one applied
	rateLeft  int              // requests left in it
	rateReset int64            // seconds until it is full again
	hasRate   bool
	left      [3]int64 // quota, owner_quota, uses: what is left
	hasLeft   [3]bool
	values    [6]string // backing store of the header values set (see value)
	nvalues   int
	text      [128]byte // backing store of header texts built (see limitText)
	ntext     int
}

// Indexes of keyRequest.left.
const (
	leftQuota = iota
	leftOwnerQuota
	leftUses
)

// keyRequestPlaceholder is answered by a request's provider with its
// keyRequest, so that a second api_key handler on the same request can
// find the first one's and supersede it. No configuration names it, and
// it reads as empty if one does (keyRequestRef's String).
const keyRequestPlaceholder = "api_key.\x00request"

// keyRequestRef is how a keyRequest is handed through the replacer.
type keyRequestRef struct{ r *keyRequest }

func (keyRequestRef) String() string { return "" }

// startKeyRequest allocates the keyRequest of a request whose key the
// store knows and registers its placeholder provider.
func (h *Handler) startKeyRequest(x *exchange) *keyRequest {
	a := &keyRequest{key: x.key}
	if repl, ok := x.r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if prev, ok := repl.Get(keyRequestPlaceholder); ok {
			if p, ok := prev.(keyRequestRef); ok {
				p.r.superseded = true
			}
		}
		repl.Map(a.placeholder)
	}
	x.adm = a
	return a
}

// placeholder answers the placeholders of the request's key.
func (a *keyRequest) placeholder(name string) (any, bool) {
	if a.superseded {
		return nil, false
	}
	rest, ok := strings.CutPrefix(name, "api_key.")
	if !ok {
		if name == "http.auth.user.id" && a.admitted {
			return a.key.ID, true
		}
		return nil, false
	}
	switch rest {
	case "\x00request":
		return keyRequestRef{a}, true
	case "ratelimit.policy", "ratelimit.remaining", "ratelimit.reset":
		if !a.hasRate {
			return nil, false
		}
		switch rest {
		case "ratelimit.policy":
			return a.rate.String(), true
		case "ratelimit.remaining":
			return strconv.Itoa(a.rateLeft), true
		}
		return strconv.FormatInt(a.rateReset, 10), true
	case "quota.remaining":
		return a.leftText(leftQuota)
	case "owner_quota.remaining":
		return a.leftText(leftOwnerQuota)
	case "uses.remaining":
		return a.leftText(leftUses)
	}
	if !a.admitted {
		return nil, false
	}
	k := a.key
	switch rest {
	case "id":
		return k.ID, true
	case "name":
		return k.Name, true
	case "owner":
		return k.Owner, true
	case "scopes":
		return strings.Join(k.Scopes, ","), true
	}
	// Any {api_key.meta.NAME} is answered, empty if the key has no such
	// entry: a missing one must not reach the upstream as the
	// placeholder's literal text.
	if entry, ok := strings.CutPrefix(rest, "meta."); ok {
		return k.Metadata[entry], true
	}
	return nil, false
}

// value is a one-element header value list holding v, in the
// keyRequest's storage when it has room. Its capacity is one: a handler
// that appends to it gets a copy, and one that changes it in place
// changes only this request's.
func (a *keyRequest) value(v string) []string {
	if a == nil || a.nvalues == len(a.values) {
		return []string{v}
	}
	s := a.values[a.nvalues : a.nvalues+1 : a.nvalues+1]
	s[0] = v
	a.nvalues++
	return s
}

// addValue adds v to the header name of h, as http.Header.Add does with
// a canonical name, using the keyRequest's storage for a first value.
func (a *keyRequest) addValue(h http.Header, name, v string) {
	if old := h[name]; len(old) > 0 {
		h[name] = append(old, v)
		return
	}
	h[name] = a.value(v)
}

func (a *keyRequest) leftText(i int) (any, bool) {
	if !a.hasLeft[i] {
		return nil, false
	}
	return strconv.FormatInt(a.left[i], 10), true
}

// limitText is a member of a RateLimit or RateLimit-Policy header list:
// "name";k1=v1, followed by ;k2=v2 unless k2 is 0. It is built in the
// keyRequest's text storage when that has room; storage once used is
// never written again (a keyRequest is not reused), so the string stays
// immutable.
func (a *keyRequest) limitText(name string, k1 byte, v1 int64, k2 byte, v2 int64) string {
	var buf [64]byte
	b := append(buf[:0], '"')
	b = append(b, name...)
	b = append(b, '"', ';', k1, '=')
	b = strconv.AppendInt(b, v1, 10)
	if k2 != 0 {
		b = append(b, ';', k2, '=')
		b = strconv.AppendInt(b, v2, 10)
	}
	if a == nil || a.ntext+len(b) > len(a.text) {
		return string(b)
	}
	start := a.ntext
	a.ntext += copy(a.text[start:], b)
	return unsafe.String(&a.text[start], len(b))
}
