package caddymodule

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/keygate/keygate/keystore"
)

// Where a key can come from.
const (
	FromBearer = "bearer"
	FromHeader = "header"
	FromQuery  = "query"
	FromCookie = "cookie"
)

// KeySource is one place the handler looks for a key.
type KeySource struct {
	// From is where to look: "bearer" (the Authorization header with the
	// Bearer scheme), "header", "query" or "cookie".
	From string `json:"from"`
	// Name is the header, query parameter or cookie name. Not used with
	// "bearer".
	Name string `json:"name,omitempty"`
}

// defaultSources are used when none are configured: only the bearer
// token, which Caddy's request logs redact. Other sources are opt-in,
// with RedactEncoder (see logcheck.go).
var defaultSources = []KeySource{{From: FromBearer}}

func (s KeySource) String() string {
	if s.From == FromBearer {
		return s.From
	}
	return s.From + " " + s.Name
}

// validate checks one source and canonicalises header names.
func (s *KeySource) validate() error {
	switch s.From {
	case FromBearer:
		if s.Name != "" {
			return fmt.Errorf("key source 'bearer' takes no name (got %q)", s.Name)
		}
	case FromHeader:
		if !httpguts.ValidHeaderFieldName(s.Name) {
			return fmt.Errorf("key source 'header' needs a valid header name (got %q)", s.Name)
		}
		s.Name = textproto.CanonicalMIMEHeaderKey(s.Name)
	case FromQuery:
		if s.Name == "" || strings.ContainsAny(s.Name, "&=#?; ") {
			return fmt.Errorf("key source 'query' needs a parameter name without '&', '=', '#', '?', ';' or spaces (got %q)", s.Name)
		}
	case FromCookie:
		if !httpguts.ValidHeaderFieldName(s.Name) {
			return fmt.Errorf("key source 'cookie' needs a valid cookie name (got %q)", s.Name)
		}
	case "":
		return fmt.Errorf("key source has no 'from' (use bearer, header, query or cookie)")
	default:
		return fmt.Errorf("unknown key source %q (use bearer, header, query or cookie)", s.From)
	}
	return nil
}

// extractResult says what extract found. A source holding more than one
// value is ambiguous: taking either would let a client smuggle a second key
// past the one that was checked.
type extractResult int

const (
	keyAbsent extractResult = iota
	keyFound
	keyAmbiguous
)

// extract returns the key from the first source that has one, and the
// index of that source. A source present more than once (two X-API-Key
// headers, say) is ambiguous.
func extract(r *http.Request, sources []KeySource) (string, int, extractResult) {
	for i, s := range sources {
		switch s.From {
		case FromBearer:
			vals := r.Header.Values("Authorization")
			var found string
			n := 0
			for _, v := range vals {
				if tok, ok := bearerToken(v); ok {
					found = tok
					n++
				}
			}
			if n > 1 {
				return "", i, keyAmbiguous
			}
			if n == 1 {
				return found, i, keyFound
			}
		case FromHeader:
			vals := r.Header[s.Name]
			if len(vals) > 1 {
				return "", i, keyAmbiguous
			}
			if len(vals) == 1 {
				if v := strings.TrimSpace(vals[0]); v != "" {
					return v, i, keyFound
				}
			}
		case FromQuery:
			if r.URL.RawQuery == "" {
				continue
			}
			vals := queryValues(r.URL.RawQuery, s.Name)
			if len(vals) > 1 {
				return "", i, keyAmbiguous
			}
			// Trimmed like a header value: a pasted key often brings a
			// space or newline along (percent-encoded in a URL).
			if len(vals) == 1 {
				if v := strings.TrimSpace(vals[0]); v != "" {
					return v, i, keyFound
				}
			}
		case FromCookie:
			cookies := r.CookiesNamed(s.Name)
			if len(cookies) > 1 {
				return "", i, keyAmbiguous
			}
			if len(cookies) == 1 && cookies[0].Value != "" {
				return cookies[0].Value, i, keyFound
			}
		}
	}
	return "", -1, keyAbsent
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// value; the scheme is case-insensitive (RFC 9110, section 11.1).
func bearerToken(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(v[len(scheme):]), true
}

// queryValues returns the decoded values of name in a raw query.
func queryValues(raw, name string) []string {
	var out []string
	for part := range strings.SplitSeq(raw, "&") {
		k, v, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != name {
			continue
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			out = append(out, dv)
		} else {
			out = append(out, v)
		}
	}
	return out
}

// strip removes every configured source from the request, so that the key
// (or a second key a client tried to smuggle) never reaches the upstream.
// It edits the request in place, leaving everything else byte for byte as
// the client sent it: a legacy upstream may care about parameter order.
func strip(r *http.Request, sources []KeySource) {
	for _, s := range sources {
		switch s.From {
		case FromBearer:
			vals := r.Header["Authorization"]
			kept := vals[:0:0]
			for _, v := range vals {
				if _, ok := bearerToken(v); !ok {
					kept = append(kept, v)
				}
			}
			if len(kept) == len(vals) {
				continue
			}
			if len(kept) == 0 {
				delete(r.Header, "Authorization")
			} else {
				r.Header["Authorization"] = kept
			}
		case FromHeader:
			delete(r.Header, s.Name) // canonical (KeySource.validate)
		case FromQuery:
			if r.URL.RawQuery == "" {
				continue
			}
			var kept []string
			removed := false
			for part := range strings.SplitSeq(r.URL.RawQuery, "&") {
				k, _, _ := strings.Cut(part, "=")
				if dk, err := url.QueryUnescape(k); err == nil && dk == s.Name {
					removed = true
					continue
				}
				kept = append(kept, part)
			}
			if removed {
				r.URL.RawQuery = strings.Join(kept, "&")
				r.URL.ForceQuery = false
				r.RequestURI = r.URL.RequestURI()
			}
		case FromCookie:
			// Split the way net/http reads cookies, so that whatever
			// extract could have found is what gets removed.
			vals := r.Header.Values("Cookie")
			var kept []string
			removed := false
			for _, line := range vals {
				for part := range strings.SplitSeq(line, ";") {
					part = textproto.TrimString(part)
					if part == "" {
						continue
					}
					name, _, _ := strings.Cut(part, "=")
					if textproto.TrimString(name) == s.Name {
						removed = true
						continue
					}
					kept = append(kept, part)
				}
			}
			switch {
			case !removed:
			case len(kept) == 0:
				r.Header.Del("Cookie")
			default:
				r.Header.Set("Cookie", strings.Join(kept, "; "))
			}
		}
	}
}

// stripAuthorizationKeys removes every Authorization value that holds a
// well-formed key of format f anywhere, whatever the scheme or syntax
// ("Bearer K", "Token K", "K", `Token key="K"`, a list, or Basic with the
// key as user name or password), so that a key never reaches the
// upstream even when the bearer source is not configured. Other values
// (a Basic login, another token) are kept.
func stripAuthorizationKeys(r *http.Request, f keystore.Format) {
	vals := r.Header["Authorization"]
	if len(vals) == 0 {
		return
	}
	kept := vals[:0:0]
	for _, v := range vals {
		if !authorizationHasKey(v, f) {
			kept = append(kept, v)
		}
	}
	switch {
	case len(kept) == len(vals):
	case len(kept) == 0:
		delete(r.Header, "Authorization")
	default:
		r.Header["Authorization"] = kept
	}
}

func authorizationHasKey(v string, f keystore.Format) bool {
	if holdsKey(v, f) {
		return true
	}
	scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "basic") {
		return false
	}
	cred = strings.TrimSpace(cred)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(cred); err == nil {
			return holdsKey(string(b), f)
		}
	}
	return false
}

// stripQueryKeys removes every query parameter that holds a well-formed
// key of format f, whatever its name or syntax (a parameter the gateway
// does not read, "a=1;api_key=K" that some frameworks split at ';',
// "api.key=K" that PHP reads as api_key), leaving the others byte for
// byte.
func stripQueryKeys(r *http.Request, f keystore.Format) {
	raw := r.URL.RawQuery
	if len(raw) < f.KeyLen() {
		return
	}
	var kept []string
	removed := false
	for part := range strings.SplitSeq(raw, "&") {
		text := part
		if strings.IndexByte(part, '%') >= 0 {
			if dec, err := url.QueryUnescape(part); err == nil {
				text = dec
			}
		}
		if holdsKey(text, f) {
			removed = true
			continue
		}
		kept = append(kept, part)
	}
	if removed {
		r.URL.RawQuery = strings.Join(kept, "&")
		r.URL.ForceQuery = false
		r.RequestURI = r.URL.RequestURI()
	}
}

// holdsKey reports whether s contains a well-formed key of format f as a
// word of its own: a run of key characters ([A-Za-z0-9_]) that parses.
func holdsKey(s string, f keystore.Format) bool {
	n := f.KeyLen()
	if len(s) < n {
		return false
	}
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && isKeyChar(s[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start == n {
			if _, err := f.Parse(s[start:i]); err == nil {
				return true
			}
		}
		start = -1
	}
	return false
}

func isKeyChar(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '_'
}
