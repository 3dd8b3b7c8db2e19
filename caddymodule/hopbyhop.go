package caddymodule

import (
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// keepFromConnection removes from the Connection header every token that
// names one of protect. reverse_proxy deletes the headers a client lists
// in Connection (RFC 9110 hop-by-hop) after this handler has set the
// trusted identity headers; a client must not be able to delete them
// that way.
func keepFromConnection(r *http.Request, protect []string) {
	vals := r.Header["Connection"]
	if len(vals) == 0 {
		return
	}
	changed := false
	kept := make([]string, 0, len(vals))
	for _, v := range vals {
		var tokens []string
		for tok := range strings.SplitSeq(v, ",") {
			tok = textproto.TrimString(tok)
			if tok == "" {
				continue
			}
			if slices.Contains(protect, textproto.CanonicalMIMEHeaderKey(tok)) {
				changed = true
				continue
			}
			tokens = append(tokens, tok)
		}
		if len(tokens) > 0 {
			kept = append(kept, strings.Join(tokens, ", "))
		}
	}
	switch {
	case !changed:
	case len(kept) == 0:
		r.Header.Del("Connection")
	default:
		r.Header["Connection"] = kept
	}
}

// guardTrailers keeps the headers in blocked out of the request's
// trailers. reverse_proxy forwards request trailers, and net/http merges
// every trailer the client sends into the trailers it declared, after the
// handlers have run (when the body reaches its end); a trailer named like
// a trusted identity header or a key source would reach the upstream
// unchecked. Declared ones are dropped now, and the body is wrapped so
// that whatever arrives at its end is filtered before reverse_proxy copies
// it. Requests that declare no trailers cannot carry any to the upstream.
func guardTrailers(r *http.Request, blocked []string) {
	if r.Trailer == nil {
		return
	}
	dropTrailers(r.Trailer, blocked)
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &trailerGuard{ReadCloser: r.Body, trailer: r.Trailer, blocked: blocked}
	}
}

// dropTrailers deletes the trailers named in blocked, also under the
// spellings some upstreams treat as the same header (X_Api_Key_Id,
// X.Api.Key.Id: CGI-style environments map '_' and '.' to '-').
func dropTrailers(t http.Header, blocked []string) {
	for name := range t {
		alias := strings.Map(func(r rune) rune {
			if r == '_' || r == '.' {
				return '-'
			}
			return r
		}, name)
		if slices.Contains(blocked, textproto.CanonicalMIMEHeaderKey(alias)) {
			delete(t, name)
		}
	}
}

// trailerGuard filters the request's trailers when its body ends, before
// any reader above it sees the end.
type trailerGuard struct {
	io.ReadCloser
	trailer http.Header
	blocked []string
}

func (g *trailerGuard) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	if err == io.EOF {
		dropTrailers(g.trailer, g.blocked)
	}
	return n, err
}
