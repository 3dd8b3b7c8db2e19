package keystore

import (
	"context"
	"fmt"
	"time"
)

// Status classes of usage counts: StatusClass(code) indexes
// UsageCounts.Status.
const (
	Class1xx = iota
	Class2xx
	Class3xx
	Class4xx
	Class5xx
	numClasses
)

// StatusClass returns the class index of an HTTP status code; codes
// outside 100–599 count as 5xx (a handler that wrote no valid status).
func StatusClass(code int) int {
	if code < 100 || code > 599 {
		return Class5xx
	}
	return code/100 - 1
}

// UsageCounts are what a key did in some period.
type UsageCounts struct {
	// Status counts requests by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
	Status [numClasses]int64
	// BytesIn and BytesOut are request and response body bytes.
	BytesIn  int64
	BytesOut int64
	// LatencyMicros is the total time requests took, in microseconds.
	LatencyMicros int64
}

// Add adds o to c.
func (c *UsageCounts) Add(o *UsageCounts) {
	for i := range c.Status {
		c.Status[i] += o.Status[i]
	}
	c.BytesIn += o.BytesIn
	c.BytesOut += o.BytesOut
	c.LatencyMicros += o.LatencyMicros
}

// Requests is the number of requests of every class.
func (c UsageCounts) Requests() int64 {
	var n int64
	for _, v := range c.Status {
		n += v
	}
	return n
}

// UsageRow is one key's counts in one minute.
type UsageRow struct {
	KeyID string
	// Owner is the key's owner when the requests were made.
	Owner string
	// Minute is the start of the minute, UTC.
	Minute time.Time
	UsageCounts
}

// UsageBatch is a set of rows written together. Its ID makes a write
// idempotent: a batch written again (after a commit whose outcome was
// lost with the connection) is applied once.
type UsageBatch struct {
	ID   [16]byte
	Rows []UsageRow
	// LastUsed is each key's latest request in the batch.
	LastUsed map[string]time.Time
}

// Usage bucket sizes.
const (
	ByMinute = "minute"
	ByHour   = "hour"
	ByDay    = "day"
)

// UsageQuery selects usage to read: one key's, one owner's, or
// everyone's, since a time, in buckets of a minute, an hour or a day.
type UsageQuery struct {
	KeyID string
	Owner string
	Since time.Time
	By    string
}

// UsageBucket is the usage of one bucket (UTC minute, hour or day).
type UsageBucket struct {
	Start time.Time
	UsageCounts
}

// UsageStore keeps usage counts per key and minute.
type UsageStore interface {
	// WriteUsage adds a batch's counts to the stored ones and moves each
	// key's last use forward, in one transaction. A batch whose ID was
	// written before changes nothing and reports applied == false.
	WriteUsage(ctx context.Context, b *UsageBatch) (applied bool, err error)
	// Usage sums the stored counts q selects into buckets, oldest
	// first; buckets without requests are left out.
	Usage(ctx context.Context, q UsageQuery) ([]UsageBucket, error)
	// LastUsed returns when the key with id was last used (zero if never).
	LastUsed(ctx context.Context, id string) (time.Time, error)
	// PruneUsage deletes the counts of minutes before usageBefore and the
	// record of batches written before batchesBefore.
	PruneUsage(ctx context.Context, usageBefore, batchesBefore time.Time) (rows int64, err error)
}

// Validate checks q's bucket size; backends call it before they query.
func (q UsageQuery) Validate() error {
	switch q.By {
	case ByMinute, ByHour, ByDay:
		return nil
	default:
		return fmt.Errorf("usage buckets must be %q, %q or %q, not %q", ByMinute, ByHour, ByDay, q.By)
	}
}
