package caddymodule

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

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
// refused request spends nothing: every key has its state in the app's
// limiter (GCRA, in memory, per gateway process; it survives reloads),
// checked against the route's rate_limit.
type rateCheck struct {
	limiter *ratelimit.Keyed
	policy  ratelimit.Policy
	limit   ratelimit.Limit
	headers bool // send RateLimit-Policy and RateLimit
	problem *problem
}

func (c rateCheck) check(x exchange) verdict {
	d := c.limiter.Take(x.key.ID, c.limit, x.now)
	reset := strconv.FormatInt(int64((d.Reset+time.Second-1)/time.Second), 10)
	remaining := strconv.Itoa(d.Remaining)
	if c.headers {
		h := x.w.Header()
		h["Ratelimit-Policy"] = []string{`"key";q=` + strconv.FormatInt(c.policy.Count, 10) + ";w=" + strconv.FormatInt(c.policy.Window(), 10)}
		h["Ratelimit"] = []string{`"key";r=` + remaining + ";t=" + reset}
	}
	if repl, ok := x.r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("api_key.ratelimit.policy", c.policy.String())
		repl.Set("api_key.ratelimit.remaining", remaining)
		repl.Set("api_key.ratelimit.reset", reset)
	}
	if !d.Allowed {
		return verdict{problem: c.problem, wait: d.RetryAfter, why: "API key over its rate limit"}
	}
	return verdict{}
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

// rateLimitStep is the route's rate-limit check, or nil when the route
// has no rate limit.
func (h *Handler) rateLimitStep(limiter *ratelimit.Keyed) check {
	if h.RateLimit == nil {
		return nil
	}
	p, _ := h.RateLimit.policy("rate_limit") // validated
	return rateCheck{
		limiter: limiter,
		policy:  p,
		limit:   p.Limit(),
		headers: !strings.EqualFold(h.RateLimitHeaders, "off"),
		problem: h.problems.rateLimited,
	}
}
