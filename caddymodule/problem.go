package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Error codes: stable, machine-readable, documented in docs/errors.md.
const (
	CodeMissingKey        = "missing_key"
	CodeInvalidKey        = "invalid_key"
	CodeExpiredKey        = "expired_key"
	CodeNotYetValid       = "not_yet_valid_key"
	CodeInsufficientScope = "insufficient_scope"
	CodeStoreUnavailable  = "store_unavailable"
	CodeTooManyFailures   = "too_many_failed_attempts"
	CodeCrossOrigin       = "cross_origin_request"
	CodeTooManyPending    = "too_many_concurrent_checks"
	CodeRateLimited       = "rate_limited"
	CodeQuotaExceeded     = "quota_exceeded"
	CodeUsesExhausted     = "uses_exhausted"
	CodeIPNotAllowed      = "ip_not_allowed"
	CodeTLSRequired       = "tls_required"
)

// problemTypeBase prefixes the RFC 9457 "type" of every problem; the
// fragment is the error code.
const problemTypeBase = "https://github.com/keygate/keygate/blob/main/docs/errors.md#"

// problem is one prepared error answer. Bodies are rendered once at
// provision time: every malformed, unknown or revoked key gets the very
// same bytes, and rejecting a flood costs no encoding.
type problem struct {
	status  int
	code    string
	wwwAuth string // WWW-Authenticate value; empty for none
	body    []byte
	length  string
	err     error // for handle_errors mode: {http.error.message}
}

type problemJSON struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

func newProblem(status int, code, title, detail, wwwAuth string) *problem {
	body, _ := json.Marshal(problemJSON{
		Type:   problemTypeBase + code,
		Title:  title,
		Status: status,
		Detail: detail,
		Code:   code,
	})
	body = append(body, '\n')
	return &problem{
		status:  status,
		code:    code,
		wwwAuth: wwwAuth,
		body:    body,
		length:  strconv.Itoa(len(body)),
		err:     errors.New(code + ": " + detail),
	}
}

// problems holds the handler's prepared answers.
type problems struct {
	missing, invalid, wrongScheme, expired, scope, unavailable *problem
	notYetValid, ipNotAllowed, tlsRequired                     *problem
	tooManyFailures, tooManyPending, crossOrigin, rateLimited  *problem
	quotaExceeded, usesExhausted                               *problem
	retryAfter                                                 string
}

func newProblems(realm string, scopes []string, retryAfterSeconds int) *problems {
	challenge := `Bearer realm="` + realm + `"`
	return &problems{
		missing: newProblem(http.StatusUnauthorized, CodeMissingKey, "API key required",
			"This API requires an API key.", challenge),
		invalid: newProblem(http.StatusUnauthorized, CodeInvalidKey, "Invalid API key",
			"The API key is not valid.", challenge+`, error="invalid_token"`),
		wrongScheme: newProblem(http.StatusUnauthorized, CodeInvalidKey, "Invalid API key",
			"Send the API key as 'Authorization: Bearer <key>'.", challenge+`, error="invalid_request"`),
		expired: newProblem(http.StatusUnauthorized, CodeExpiredKey, "API key expired",
			"The API key has expired.", challenge+`, error="invalid_token", error_description="The API key has expired"`),
		notYetValid: newProblem(http.StatusUnauthorized, CodeNotYetValid, "API key not valid yet",
			"The API key is not valid yet.", challenge+`, error="invalid_token", error_description="The API key is not valid yet"`),
		ipNotAllowed: newProblem(http.StatusForbidden, CodeIPNotAllowed, "Address not allowed",
			"This API key may not be used from this network address.", ""),
		scope: newProblem(http.StatusForbidden, CodeInsufficientScope, "Insufficient scope",
			"The API key does not grant the scopes this resource requires: "+strings.Join(scopes, " ")+".",
			challenge+`, error="insufficient_scope", scope="`+strings.Join(scopes, " ")+`"`),
		unavailable: newProblem(http.StatusServiceUnavailable, CodeStoreUnavailable, "Service temporarily unavailable",
			"The API key could not be checked right now. Retry later.", ""),
		tooManyFailures: newProblem(http.StatusTooManyRequests, CodeTooManyFailures, "Too many failed attempts",
			"Too many requests from this client carried invalid API keys. Retry later.", ""),
		tooManyPending: newProblem(http.StatusTooManyRequests, CodeTooManyPending, "Too many key checks at once",
			"Too many requests from this client are waiting for their API keys to be checked. Retry later.", ""),
		rateLimited: newProblem(http.StatusTooManyRequests, CodeRateLimited, "Rate limit exceeded",
			"This API key sent more requests than its rate limit allows. Retry after the time in Retry-After.", ""),
		quotaExceeded: newProblem(http.StatusTooManyRequests, CodeQuotaExceeded, "Quota exceeded",
			"This API key, or its owner, has used up its quota for the current period. Retry after the time in Retry-After.", ""),
		usesExhausted: newProblem(http.StatusTooManyRequests, CodeUsesExhausted, "No uses left",
			"This API key has no uses left.", ""),
		tlsRequired: newProblem(http.StatusForbidden, CodeTLSRequired, "HTTPS required",
			"This API accepts API keys only over HTTPS. This key was sent unencrypted and must be treated as exposed: revoke it or rotate it.", ""),
		crossOrigin: newProblem(http.StatusForbidden, CodeCrossOrigin, "Cross-origin request refused",
			"A request that changes state and is authenticated by a cookie must come from this site's own pages.", ""),
		retryAfter: strconv.Itoa(retryAfterSeconds),
	}
}

// rejectRetry answers with p and a Retry-After of wait, rounded up to
// whole seconds.
func (h *Handler) rejectRetry(w http.ResponseWriter, r *http.Request, p *problem, wait time.Duration, keyID string) error {
	w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
	return h.reject(w, r, p, keyID)
}

// reject answers with p: by default with an application/problem+json
// body; with handle_errors on, by returning the error to Caddy so that the
// site's handle_errors routes render it. Headers are set either way.
// keyID, when the key parsed, goes into the security log.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, p *problem, keyID string) error {
	hdr := w.Header()
	if p.wwwAuth != "" {
		hdr.Set("WWW-Authenticate", p.wwwAuth)
	}
	if p.status == http.StatusServiceUnavailable {
		hdr.Set("Retry-After", h.problems.retryAfter)
	}
	hdr.Set("Cache-Control", "no-store")
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("api_key.error", p.code)
	}
	countRequest(p.code)
	h.security.refused(r, p.code, keyID)
	if h.HandleErrors {
		return caddyhttp.Error(p.status, p.err)
	}
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Content-Length", p.length)
	w.WriteHeader(p.status)
	// A client that went away cannot be told; that is not a server error.
	w.Write(p.body)
	return nil
}
