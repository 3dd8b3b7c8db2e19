package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/ratelimit"
)

// RateLimit is a rate limit: Rate requests per second, minute or hour
// ("100/s", "100/m", "100/h"), with a burst.
type RateLimit struct {
	// Rate is "N/s", "N/m" or "N/h".
	Rate string `json:"rate"`
	// Burst is how many requests may come at once after a quiet period.
	// Default: N, the rate's count.
	Burst int `json:"burst,omitempty"`
}

// policy parses the limit; what names the setting in errors.
func (l *RateLimit) policy(what string) (ratelimit.Policy, error) {
	p, err := ratelimit.ParsePolicy(l.Rate, l.Burst)
	if err != nil {
		return p, fmt.Errorf("%s: %v", what, err)
	}
	return p, nil
}

// The rate-limit step, after the status and scope checks so that a
// refused request spends nothing. Each key has its state in the app's
// limiter (GCRA, in memory, per gateway process; it survives reloads),
// checked against the key's own rate, else the route's rate_limit; an
// owner's rate, when set, is shared by all of its keys and checked too.
type rateCheck struct {
	limiter *sharedLimiter
	route   ratelimit.Policy // zero: none
	limit   ratelimit.Limit  // route's, parsed
	headers bool             // send RateLimit-Policy and RateLimit
	problem *problem
}

func (c rateCheck) check(x exchange) verdict {
	p, own := x.key.Limits.RatePolicy()
	l := c.limit
	if own {
		l = p.Limit()
	} else {
		p = c.route // zero when the route has none
	}
	op, owned := x.key.OwnerLimits.RatePolicy()
	if p.IsZero() && !owned {
		return verdict{} // unlimited
	}
	var d ratelimit.Decision
	if !p.IsZero() {
		d = c.limiter.keys.Take(x.key.ID, l, x.now)
		c.report(x, "key", p, d)
		if !d.Allowed {
			return verdict{problem: c.problem, wait: d.RetryAfter, why: "API key over its rate limit"}
		}
	}
	if owned {
		ol := op.Limit()
		od := c.limiter.owners.Take(x.key.Owner, ol, x.now)
		c.report(x, "owner", op, od)
		if !od.Allowed {
			if !p.IsZero() {
				c.limiter.keys.Refund(x.key.ID, l)
			}
			return verdict{problem: c.problem, wait: od.RetryAfter, why: "API key's owner over its rate limit"}
		}
	}
	return verdict{}
}

// report sends a limit's figures in the RateLimit headers (one list
// member per policy: "key", "owner", "quota", …) and placeholders.
func (c rateCheck) report(x exchange, name string, p ratelimit.Policy, d ratelimit.Decision) {
	reset := int64((d.Reset + time.Second - 1) / time.Second)
	if c.headers {
		addRateLimitHeaders(x.adm, x.w.Header(), name, p.Count, p.Window(), int64(d.Remaining), reset)
	}
	if name == "key" && x.adm != nil {
		a := x.adm
		a.rate, a.rateLeft, a.rateReset, a.hasRate = p, d.Remaining, reset, true
	}
}

// addRateLimitHeaders adds one policy to RateLimit-Policy and RateLimit
// (draft-ietf-httpapi-ratelimit-headers, structured-field lists: quota q
// per window w seconds; r remaining, t seconds until reset), in the
// storage of the request's keyRequest a.
func addRateLimitHeaders(a *keyRequest, h http.Header, name string, q, w, r, t int64) {
	a.addValue(h, "Ratelimit-Policy", a.limitText(name, 'q', q, 'w', w))
	a.addValue(h, "Ratelimit", a.limitText(name, 'r', r, 't', t))
}

// validateRateLimit checks the route's rate limit.
func (h *Handler) validateRateLimit() error {
	if h.RateLimit != nil {
		if _, err := h.RateLimit.policy("rate_limit"); err != nil {
			return err
		}
	}
	switch strings.ToLower(h.RateLimitHeaders) {
	case "", "on", "off":
		return nil
	}
	return fmt.Errorf("rate_limit_headers must be on or off, got %q", h.RateLimitHeaders)
}

// rateLimitStep is the route's rate-limit check.
func (h *Handler) rateLimitStep(limiter *sharedLimiter) check {
	c := rateCheck{
		limiter: limiter,
		headers: h.rateLimitHeaders(),
		problem: h.problems.rateLimited,
	}
	if h.RateLimit != nil {
		c.route, _ = h.RateLimit.policy("rate_limit") // validated
		c.limit = c.route.Limit()
	}
	return c
}

func (h *Handler) rateLimitHeaders() bool { return !strings.EqualFold(h.RateLimitHeaders, "off") }
