package ratelimit

import (
	"hash/maphash"
	"time"
)

// Keyed limits events per key (an API key's id, an owner), each event
// checked against the limit that comes with it, so that every key can have
// its own. State is one int64 per key held, in shards with a lock each (no
// lock is shared by every event), and the number of keys held is bounded
// by the capacity: keys at rest are dropped first when a shard is full.
type Keyed struct {
	states *states[string]
}

// NewKeyed returns a limiter holding at most capacity keys.
func NewKeyed(capacity int) *Keyed {
	return &Keyed{states: newStates(capacity, maphash.String)}
}

// Decision is the outcome of one event.
type Decision struct {
	// Allowed reports whether the event may happen; if so it was
	// recorded.
	Allowed bool
	// Remaining is how many more events could happen at once now.
	Remaining int
	// Reset is how long until the key is back at rest: its whole burst
	// available again.
	Reset time.Duration
	// RetryAfter, when the event was refused, is how long until one would
	// be allowed.
	RetryAfter time.Duration
}

// Take records one event for key at now if l allows it.
func (k *Keyed) Take(key string, l Limit, now time.Time) Decision {
	s, ok, wait := k.states.allow(key, l, now)
	return l.decision(s, ok, wait, now)
}

// Refund takes back one event of l recorded for key: a later check
// refused the request it was for.
func (k *Keyed) Refund(key string, l Limit) { k.states.refund(key, l.Interval) }

// Len returns the number of keys held.
func (k *Keyed) Len() int { return k.states.len() }

// decision describes state s (after the event, if it was allowed) at now.
func (l Limit) decision(s State, ok bool, wait time.Duration, now time.Time) Decision {
	ahead := max(0, int64(s)-now.UnixNano()) // how far the TAT runs ahead of now
	d := Decision{Allowed: ok, Reset: time.Duration(ahead), RetryAfter: wait}
	if free := int64(l.tolerance()) - ahead; free > 0 {
		d.Remaining = int(free / int64(l.Interval))
	}
	return d
}
