package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// CounterKey names one shared counter: what it counts (Kind: a key's
// quota, its uses, an owner's quota; Subject: the key id or owner) and
// the start of the period it counts in, in Unix seconds.
type CounterKey struct {
	Kind    string
	Subject string
	Start   int64
}

// CounterDelta is what one gateway counted for a counter since its last
// sync.
type CounterDelta struct {
	Key CounterKey
	N   int64
}

// Counters enforces quotas that several gateways share through a store.
// Each gateway counts here, on top of the store's total as last read;
// a sync (Collect, then Written) adds what it counted to the store and
// reads the new totals back. Between syncs a gateway does not see the
// others' requests: across N gateways a counter can pass its limit by
// what the other N-1 let through in one sync interval, never more.
//
// A counter's first use in a process reads the store's total (Load), so
// that a restart does not reset a quota; if the store cannot be read,
// counting starts from zero and the next sync sets the right total.
type Counters struct {
	seed   maphash.Seed
	shards [shardCount]counterShard
	per    int
}

type counterShard struct {
	mu sync.Mutex
	m  map[CounterKey]*counter
	_  [40]byte
}

type counter struct {
	known   int64         // the store's total when last read or written
	unsent  int64         // counted here since the last Collect
	sending int64         // in the batch being written
	end     time.Time     // the period's end; zero: never
	loading chan struct{} // while the first read runs; closed after
	loaded  bool          // the first read ended (successfully or not)
}

// NewCounters returns counters that keep about capacity idle counters
// (those with nothing left to write) in memory; busy ones are never
// dropped.
func NewCounters(capacity int) *Counters {
	c := &Counters{seed: maphash.MakeSeed(), per: max(1, (capacity+shardCount-1)/shardCount)}
	for i := range c.shards {
		c.shards[i].m = make(map[CounterKey]*counter)
	}
	return c
}

func (c *Counters) shard(k CounterKey) *counterShard {
	return &c.shards[maphash.String(c.seed, k.Subject)%shardCount]
}

// Loaded reports whether k's counter has been read from the store (or
// tried to), so that Take may count on it.
func (c *Counters) Loaded(k CounterKey) bool {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ct := sh.m[k]
	return ct != nil && ct.loaded
}

// Load makes sure k's counter holds the store's total, reading it with
// read on the counter's first use in this process (one read however many
// requests wait for it). end is the end of k's period (zero: never). An
// error from read is returned once; counting then starts from zero until
// the next sync.
func (c *Counters) Load(ctx context.Context, k CounterKey, end time.Time, read func(context.Context, CounterKey) (int64, error)) error {
	sh := c.shard(k)
	sh.mu.Lock()
	ct := sh.m[k]
	if ct == nil {
		if len(sh.m) >= c.per {
			sh.evictIdle()
		}
		ct = &counter{end: end}
		sh.m[k] = ct
	}
	if ct.loaded {
		sh.mu.Unlock()
		return nil
	}
	if ch := ct.loading; ch != nil {
		sh.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	ct.loading = ch
	sh.mu.Unlock()

	total, err := read(ctx, k)
	sh.mu.Lock()
	if err == nil {
		ct.known = max(ct.known, total)
	}
	ct.loaded, ct.loading = true, nil
	sh.mu.Unlock()
	close(ch)
	return err
}

// Take counts one request against k if the total stays within limit, and
// returns how many more would fit. Load k first.
func (c *Counters) Take(k CounterKey, limit int64) (ok bool, remaining int64) {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ct := sh.m[k]
	if ct == nil {
		// Dropped since Load (it was idle): the next sync reads it again.
		ct = &counter{loaded: true}
		sh.m[k] = ct
	}
	total := ct.known + ct.sending + ct.unsent
	if total >= limit {
		return false, 0
	}
	ct.unsent++
	return true, limit - total - 1
}

// Refund takes back one request Take counted for k: a later check refused
// it.
func (c *Counters) Refund(k CounterKey) {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ct := sh.m[k]; ct != nil && ct.unsent > 0 {
		ct.unsent--
	}
}

// Collect returns what was counted since the last Collect, to be added to
// the store, and forgets counters whose period ended at now with nothing
// left to write.
func (c *Counters) Collect(now time.Time) []CounterDelta {
	var out []CounterDelta
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k, ct := range sh.m {
			if ct.unsent > 0 {
				out = append(out, CounterDelta{Key: k, N: ct.unsent})
				ct.sending += ct.unsent
				ct.unsent = 0
			} else if ct.sending == 0 && !ct.end.IsZero() && !now.Before(ct.end) {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// Written records that the store took deltas (from Collect) and now holds
// totals[i] for deltas[i].
func (c *Counters) Written(deltas []CounterDelta, totals []int64) {
	for i, d := range deltas {
		sh := c.shard(d.Key)
		sh.mu.Lock()
		if ct := sh.m[d.Key]; ct != nil {
			ct.sending -= d.N
			ct.known = totals[i]
			ct.loaded = true
		}
		sh.mu.Unlock()
	}
}

// Len returns the number of counters held.
func (c *Counters) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// evictIdle drops one counter with nothing to write, if it finds one
// among a sample; the store holds its total.
func (sh *counterShard) evictIdle() {
	n := 0
	for k, ct := range sh.m {
		if ct.unsent == 0 && ct.sending == 0 && ct.loaded {
			delete(sh.m, k)
			return
		}
		if n++; n >= evictScan {
			return
		}
	}
}
