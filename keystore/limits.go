package keystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/ratelimit"
)

// Limits are the limits stored with a key, or with an owner for all of
// its keys together. A zero field is no limit of that kind; a key without
// a rate of its own gets its route's rate_limit.
type Limits struct {
	// Rate is "N/s", "N/m" or "N/h"; Burst the requests allowed at once
	// (0: N).
	Rate  string `json:"rate,omitempty"`
	Burst int    `json:"burst,omitempty"`
	// Quota is "N/day" or "N/month": requests per calendar day or month
	// in UTC, shared by every gateway on the store.
	Quota string `json:"quota,omitempty"`
	// Uses is a number of accepted requests after which the key is
	// refused; with Refill ("day" or "month") it is restored to Uses at
	// the start of each calendar day or month in UTC.
	Uses   int64  `json:"uses,omitempty"`
	Refill string `json:"refill,omitempty"`

	// What the request path uses, parsed once by Validate.
	rate        ratelimit.Policy
	quota, uses ratelimit.Quota
}

// IsZero reports whether l sets no limit.
func (l *Limits) IsZero() bool {
	return l == nil || l.Rate == "" && l.Burst == 0 && l.Quota == "" && l.Uses == 0 && l.Refill == ""
}

// Validate checks l and prepares it for the request path.
func (l *Limits) Validate() error {
	if l == nil {
		return nil
	}
	l.rate, l.quota, l.uses = ratelimit.Policy{}, ratelimit.Quota{}, ratelimit.Quota{}
	if l.Rate == "" && l.Burst != 0 {
		return fmt.Errorf("a burst needs a rate")
	}
	var err error
	if l.Rate != "" {
		if l.rate, err = ratelimit.ParsePolicy(l.Rate, l.Burst); err != nil {
			return err
		}
	}
	if l.Quota != "" {
		if l.quota, err = ratelimit.ParseQuota(l.Quota); err != nil {
			return err
		}
	}
	if l.Uses < 0 || l.Uses > ratelimit.MaxQuota {
		return fmt.Errorf("uses must be 1 to %d", int64(ratelimit.MaxQuota))
	}
	switch l.Refill {
	case "", "day", "month":
	default:
		return fmt.Errorf("refill %q must be day or month", l.Refill)
	}
	if l.Refill != "" && l.Uses == 0 {
		return fmt.Errorf("a refill needs a number of uses")
	}
	if l.Uses != 0 {
		l.uses = ratelimit.Quota{Limit: l.Uses, Period: ratelimit.Lifetime}
		switch l.Refill {
		case "day":
			l.uses.Period = ratelimit.Day
		case "month":
			l.uses.Period = ratelimit.Month
		}
	}
	return nil
}

// ValidateForOwner checks l as the limits an owner's keys share: a rate
// and a quota; uses belong to a key.
func (l *Limits) ValidateForOwner() error {
	if l == nil {
		return nil
	}
	if l.Uses != 0 || l.Refill != "" {
		return errors.New("uses belong to a key, not to an owner; set them with create")
	}
	return l.Validate()
}

// RatePolicy returns l's rate limit; ok is false when it has none.
func (l *Limits) RatePolicy() (ratelimit.Policy, bool) {
	if l == nil {
		return ratelimit.Policy{}, false
	}
	return l.rate, !l.rate.IsZero()
}

// QuotaLimit returns l's quota; ok is false when it has none.
func (l *Limits) QuotaLimit() (ratelimit.Quota, bool) {
	if l == nil {
		return ratelimit.Quota{}, false
	}
	return l.quota, l.quota.Limit > 0
}

// UsesLimit returns l's uses as a quota (Lifetime, or per refill period);
// ok is false when it has none.
func (l *Limits) UsesLimit() (ratelimit.Quota, bool) {
	if l == nil {
		return ratelimit.Quota{}, false
	}
	return l.uses, l.uses.Limit > 0
}

// LimitsText is l as the backends store it: JSON, "" for none.
func LimitsText(l *Limits) string {
	if l.IsZero() {
		return ""
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// ParseLimits reads what LimitsText wrote.
func ParseLimits(s string) (*Limits, error) {
	if s == "" {
		return nil, nil
	}
	l := new(Limits)
	if err := json.Unmarshal([]byte(s), l); err != nil {
		return nil, fmt.Errorf("corrupt limits: %w", err)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("corrupt limits: %w", err)
	}
	return l, nil
}

// CountDelta is what one gateway counted for one counter since its last
// write: the requests of a key's quota or uses, or an owner's quota, in
// the period that started at Start.
type CountDelta struct {
	Subject string
	Start   time.Time
	N       int64
}

// CountBatch is one gateway's write of counter deltas. Its ID makes the
// write idempotent: a batch written again after an ambiguous commit is
// added once.
type CountBatch struct {
	ID     [16]byte
	Deltas []CountDelta
}

// CounterStore keeps the counters quotas and uses are enforced against,
// shared by every gateway on the store.
type CounterStore interface {
	// AddCounts adds the batch's deltas, once per batch ID however often
	// it is written, and returns each counter's total after it, in the
	// batch's order.
	AddCounts(ctx context.Context, b *CountBatch) ([]int64, error)
	// Count returns a counter's total; zero if it has none.
	Count(ctx context.Context, subject string, start time.Time) (int64, error)
}
