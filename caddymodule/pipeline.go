package caddymodule

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/keystore"
)

// The request pipeline. ServeHTTP identifies the key (step_find.go, then
// step_verify.go), then runs the checks on what the store knows about it
// (step_status.go, step_scopes.go), metered when usage metering is on
// (usage.go), and passes the request on with the key's identity
// (step_identity.go, with the signed token of step_identityjwt.go), or
// with auth_server answers it itself (authserver.go). Checks: status, scopes, rate limit
// (step_ratelimit.go). The first step that refuses ends the request. A new
// kind of check is a new check value in Handler.checks, in a file of its
// own with its configuration and validation.

// exchange is one request on its way through the steps: what they have
// learned about it so far.
type exchange struct {
	w   http.ResponseWriter // for the checks' response headers
	r   *http.Request
	now time.Time // when the handler got the request, by the handler's clock

	parsed  keystore.ParsedKey // once the key parsed
	key     *keystore.Key      // once the store knew the key
	adm     *keyRequest        // once the store knew the key
	charged bool               // the key's store lookup was charged to the client's failure budget
	owed    bool               // … and not refunded (yet)
}

// keyID is the id of the request's key once it parsed (a legacy key's
// once it was found), else "".
func (x *exchange) keyID() string {
	if x.key != nil {
		return x.key.ID
	}
	return x.parsed.ID
}

// verdict is a step's answer: pass (the zero verdict) or a refusal.
type verdict struct {
	problem *problem
	wait    time.Duration // sent as Retry-After when positive
	// failed marks a failed key check (malformed, unknown, revoked,
	// ambiguous): it is charged to the client's failure budget (see
	// Handler.invalid) unless its store lookup was charged already.
	failed bool
	// why is the debug log line, err its error field. Neither may hold
	// the key.
	why string
	err error
}

func (v verdict) refused() bool { return v.problem != nil }

// check is a step after the key is identified. It gets a copy of the
// exchange: a pointer passed through an interface would move every
// request's exchange to the heap.
type check interface {
	check(x exchange) verdict
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	x := exchange{w: w, r: r, now: h.clock.Now()}
	if v := h.findKey(&x); v.refused() {
		return h.refuse(w, &x, v)
	}
	if v := h.verifyKey(&x); v.refused() {
		return h.refuse(w, &x, v)
	}
	h.startKeyRequest(&x)
	if h.usage == nil {
		return h.decide(w, &x, next)
	}
	return h.metered(w, &x, next)
}

// decide runs the checks on a request whose key the store knows, then
// passes it on with the key's identity (with auth_server, answers with it).
func (h *Handler) decide(w http.ResponseWriter, x *exchange, next caddyhttp.Handler) error {
	x.w = w
	for _, c := range h.checks {
		if v := c.check(*x); v.refused() {
			return h.refuse(w, x, v)
		}
	}
	tok, v := h.identityToken(x)
	if v.refused() {
		return h.refuse(w, x, v)
	}
	h.admit(x.r, x.adm, tok)
	countRequest("ok")
	if h.AuthServer {
		h.answer(w, x.key, tok)
		return nil
	}
	return next.ServeHTTP(w, x.r)
}

// refuse answers a request a step refused.
func (h *Handler) refuse(w http.ResponseWriter, x *exchange, v verdict) error {
	if v.why != "" {
		var fields []zap.Field
		if id := x.keyID(); id != "" {
			fields = append(fields, zap.String("key_id", id))
		}
		if v.err != nil {
			fields = append(fields, zap.Error(v.err))
		}
		h.debug(v.why, x.r, fields...)
	}
	switch {
	case v.failed:
		return h.invalid(w, x.r, x.charged, x.keyID())
	case v.problem == h.problems.tooManyFailures:
		return h.overBudget(w, x.r, v.wait, x.keyID())
	case v.wait > 0:
		return h.rejectRetry(w, x.r, v.problem, v.wait, x.keyID())
	}
	return h.reject(w, x.r, v.problem, x.keyID())
}

// debug logs why a request was refused. Never pass it the key.
func (h *Handler) debug(msg string, r *http.Request, fields ...zap.Field) {
	if ce := h.logger.Check(zapcore.DebugLevel, msg); ce != nil {
		ce.Write(append(fields, zap.String("remote_addr", r.RemoteAddr))...)
	}
}
