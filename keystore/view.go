package keystore

import (
	"context"
	"time"
)

// The JSON forms of keys and usage that the CLI's --json output and the
// admin API share: one shape for both, documented once.

// KeyStatus is a key with its status at some instant.
type KeyStatus struct {
	*Key
	Status string `json:"status"`
}

// WithStatus returns k with its status at now.
func WithStatus(k *Key, now time.Time) KeyStatus { return KeyStatus{k, k.Status(now)} }

// WithStatuses returns keys with their statuses at now.
func WithStatuses(keys []*Key, now time.Time) []KeyStatus {
	out := make([]KeyStatus, 0, len(keys))
	for _, k := range keys {
		out = append(out, WithStatus(k, now))
	}
	return out
}

// ChangedKey is the answer to a change that may have changed nothing.
type ChangedKey struct {
	KeyStatus
	Changed bool `json:"changed"`
}

// Spent is what a key used of its quota and uses.
type Spent struct {
	QuotaUsed *int64 `json:"quota_used,omitempty"` // in the current UTC day or month
	UsesLeft  *int64 `json:"uses_left,omitempty"`
}

// SpentLimits reads the counters of k's quota and uses; nil when it has
// neither.
func SpentLimits(ctx context.Context, s CounterStore, k *Key, now time.Time) (*Spent, error) {
	q, hasQuota := k.Limits.QuotaLimit()
	u, hasUses := k.Limits.UsesLimit()
	if !hasQuota && !hasUses {
		return nil, nil
	}
	out := &Spent{}
	if hasQuota {
		n, err := s.Count(ctx, "quota:"+k.ID, q.Period.Start(now))
		if err != nil {
			return nil, err
		}
		out.QuotaUsed = &n
	}
	if hasUses {
		n, err := s.Count(ctx, "uses:"+k.ID, u.Period.Start(now))
		if err != nil {
			return nil, err
		}
		left := max(0, u.Limit-n)
		out.UsesLeft = &left
	}
	return out, nil
}

// KeyDetail is one key as `show` and the admin API's GET describe it.
type KeyDetail struct {
	KeyStatus
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	*Spent
}

// Detail reads what KeyDetail shows of k besides its record.
func Detail(ctx context.Context, s Store, k *Key, now time.Time) (KeyDetail, error) {
	lastUsed, err := s.LastUsed(ctx, k.ID)
	if err != nil {
		return KeyDetail{}, err
	}
	spent, err := SpentLimits(ctx, s, k, now)
	if err != nil {
		return KeyDetail{}, err
	}
	return KeyDetail{WithStatus(k, now), lastUsed, spent}, nil
}

// UsageReport is a usage bucket in JSON.
type UsageReport struct {
	Start          time.Time `json:"start"`
	Requests       int64     `json:"requests"`
	Status1xx      int64     `json:"1xx"`
	Status2xx      int64     `json:"2xx"`
	Status3xx      int64     `json:"3xx"`
	Status4xx      int64     `json:"4xx"`
	Status5xx      int64     `json:"5xx"`
	BytesIn        int64     `json:"bytes_in"`
	BytesOut       int64     `json:"bytes_out"`
	LatencyMicros  int64     `json:"latency_us_total"`
	AvgLatencyMsec float64   `json:"latency_ms_avg"`
}

// AvgLatency is the mean latency of the requests c counts.
func (c UsageCounts) AvgLatency() time.Duration {
	if n := c.Requests(); n > 0 {
		return time.Duration(c.LatencyMicros/n) * time.Microsecond
	}
	return 0
}

// Report returns b in JSON form.
func (b UsageBucket) Report() UsageReport {
	return UsageReport{
		Start: b.Start, Requests: b.Requests(),
		Status1xx: b.Status[Class1xx], Status2xx: b.Status[Class2xx], Status3xx: b.Status[Class3xx],
		Status4xx: b.Status[Class4xx], Status5xx: b.Status[Class5xx],
		BytesIn: b.BytesIn, BytesOut: b.BytesOut, LatencyMicros: b.LatencyMicros,
		AvgLatencyMsec: float64(b.AvgLatency().Microseconds()) / 1000,
	}
}
