package caddymodule

import (
	"context"
	"time"

	"github.com/keygate/keygate/ratelimit"
)

// The quota and uses step, after the rate limit so that a request it
// refuses spends neither. A key's quota (requests per UTC day or month)
// and uses (accepted requests, for the key's life or per refill period)
// are counters shared by every gateway on the store (see
// ratelimit.Counters and sharedCounters): counted here, added to the
// store every second, with the other gateways' totals read back.
type quotaCheck struct {
	counters *sharedCounters
	timeout  time.Duration // of a counter's first read from the store
	headers  bool
	quota    *problem
	uses     *problem
}

func (c quotaCheck) check(x exchange) verdict {
	q, hasQuota := x.key.Limits.QuotaLimit()
	oq, hasOwnerQuota := x.key.OwnerLimits.QuotaLimit()
	u, hasUses := x.key.Limits.UsesLimit()
	if !hasQuota && !hasOwnerQuota && !hasUses {
		return verdict{}
	}
	var taken [2]ratelimit.CounterKey // to give back if a later limit refuses
	n := 0
	refuse := func(v verdict) verdict {
		for _, k := range taken[:n] {
			c.counters.Refund(k)
		}
		return v
	}
	if hasQuota {
		k := ratelimit.CounterKey{Kind: "quota", Subject: x.key.ID, Start: q.Period.Start(x.now).Unix()}
		if ok, wait := c.take(x, k, q, "quota", leftQuota); !ok {
			return verdict{problem: c.quota, wait: wait, why: "API key over its quota"}
		}
		taken[n], n = k, n+1
	}
	if hasOwnerQuota {
		k := ratelimit.CounterKey{Kind: "owner_quota", Subject: x.key.Owner, Start: oq.Period.Start(x.now).Unix()}
		if ok, wait := c.take(x, k, oq, "owner_quota", leftOwnerQuota); !ok {
			return refuse(verdict{problem: c.quota, wait: wait, why: "API key's owner over its quota"})
		}
		taken[n], n = k, n+1
	}
	if hasUses {
		k := ratelimit.CounterKey{Kind: "uses", Subject: x.key.ID, Start: u.Period.Start(x.now).Unix()}
		end := u.Period.End(x.now)
		c.load(x, k, end)
		ok, remaining := c.counters.Take(k, u.Limit)
		if c.headers {
			h := x.w.Header()
			x.adm.addValue(h, "Ratelimit-Policy", x.adm.limitText("uses", 'q', u.Limit, 0, 0))
			x.adm.addValue(h, "Ratelimit", x.adm.limitText("uses", 'r', remaining, 0, 0))
		}
		c.placeholders(x, leftUses, remaining)
		if !ok {
			v := verdict{problem: c.uses, why: "API key has no uses left"}
			if !end.IsZero() { // they come back with the next period
				v.wait = end.Sub(x.now)
			}
			return refuse(v)
		}
	}
	return verdict{}
}

// take counts one request against a quota, reporting it in the RateLimit
// headers as the list member name and in the placeholder (keyRequest.left
// index left); when refused, wait is the time until the period ends.
func (c quotaCheck) take(x exchange, k ratelimit.CounterKey, q ratelimit.Quota, name string, left int) (ok bool, wait time.Duration) {
	start, end := q.Period.Start(x.now), q.Period.End(x.now)
	c.load(x, k, end)
	ok, remaining := c.counters.Take(k, q.Limit)
	reset := int64((end.Sub(x.now) + time.Second - 1) / time.Second)
	if c.headers {
		addRateLimitHeaders(x.adm, x.w.Header(), name, q.Limit, int64(end.Sub(start)/time.Second), remaining, reset)
	}
	c.placeholders(x, left, remaining)
	return ok, time.Duration(reset) * time.Second
}

// load reads a counter's total from the store on its first use in this
// process, within the store timeout. If the store does not answer, the
// gateway counts from what it knows and the next sync sets the total.
func (c quotaCheck) load(x exchange, k ratelimit.CounterKey, end time.Time) {
	if c.counters.Loaded(k) {
		return
	}
	ctx, cancel := context.WithTimeout(x.r.Context(), c.timeout)
	defer cancel()
	_ = c.counters.Load(ctx, k, end, c.counters.read)
}

// placeholders records what is left of a limit for its placeholder
// ({api_key.quota.remaining}, …; see keyRequest.placeholder).
func (c quotaCheck) placeholders(x exchange, left int, v int64) {
	if a := x.adm; a != nil {
		a.left[left], a.hasLeft[left] = v, true
	}
}

// quotaStep is the quota and uses check.
func (h *Handler) quotaStep(counters *sharedCounters) check {
	return quotaCheck{
		counters: counters,
		timeout:  h.poolKey.cfg.QueryTimeout,
		headers:  h.rateLimitHeaders(),
		quota:    h.problems.quotaExceeded,
		uses:     h.problems.usesExhausted,
	}
}
