package ratelimit

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// Table keeps one GCRA state per client address, in a fixed number of
// entries. Addresses are grouped the way clients hold them: an IPv4
// address alone, an IPv6 address by its /64 (one customer network), so
// that a client cannot escape its budget by cycling through the addresses
// of its own prefix.
//
// Memory is bounded by the capacity. When a shard is full, an entry at
// rest (one that would behave exactly like a new client) is dropped to
// make room, which loses nothing; under an attack that keeps every entry
// busy an arbitrary entry is dropped, which can only give that client a
// fresh budget, never refuse one that should pass.
type Table struct {
	limit  Limit
	seed   maphash.Seed
	shards []shard
	per    int // capacity of one shard
}

type shard struct {
	mu     sync.Mutex
	states map[netip.Addr]State
}

// shardCount spreads lock contention; a power of two.
const shardCount = 64

// evictScan is how many entries a full shard looks at to find one to drop.
const evictScan = 16

// NewTable returns a table for limit holding at most capacity clients.
func NewTable(limit Limit, capacity int) *Table {
	per := max(1, (capacity+shardCount-1)/shardCount)
	t := &Table{limit: limit, seed: maphash.MakeSeed(), shards: make([]shard, shardCount), per: per}
	for i := range t.shards {
		t.shards[i].states = make(map[netip.Addr]State)
	}
	return t
}

// Limit returns the table's limit.
func (t *Table) Limit() Limit { return t.limit }

// ClientKey is the address a client's budget is kept under: IPv4 (also
// IPv4-mapped IPv6) as is, IPv6 reduced to its /64.
func ClientKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func (t *Table) shard(a netip.Addr) *shard {
	b := a.As16()
	return &t.shards[maphash.Bytes(t.seed, b[:])%shardCount]
}

// Exhausted reports whether the client at a has no budget left at now, and
// if so how long until it has.
func (t *Table) Exhausted(a netip.Addr, now time.Time) (bool, time.Duration) {
	a = ClientKey(a)
	sh := t.shard(a)
	sh.mu.Lock()
	s, ok := sh.states[a]
	sh.mu.Unlock()
	if !ok {
		return false, 0
	}
	_, allowed, wait := t.limit.Allow(s, now)
	return !allowed, wait
}

// Spend uses one unit of the client's budget. It reports false (and
// changes nothing) when none is left, with how long until one is.
func (t *Table) Spend(a netip.Addr, now time.Time) (bool, time.Duration) {
	a = ClientKey(a)
	sh := t.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, ok := sh.states[a]
	next, allowed, wait := t.limit.Allow(s, now)
	if !allowed {
		return false, wait
	}
	if !ok && len(sh.states) >= t.per {
		sh.evict(t.limit, now)
	}
	sh.states[a] = next
	return true, 0
}

// Refund gives back one unit spent earlier: the event turned out not to
// count. A client no longer held (at rest, or evicted) has nothing to get
// back.
func (t *Table) Refund(a netip.Addr) {
	a = ClientKey(a)
	sh := t.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s, ok := sh.states[a]; ok {
		sh.states[a] = s - State(t.limit.Interval)
	}
}

// evict drops one entry, preferring one at rest. Map iteration order is
// random, so the scan samples the shard.
func (sh *shard) evict(l Limit, now time.Time) {
	var victim netip.Addr
	found := false
	n := 0
	for a, s := range sh.states {
		if l.Idle(s, now) {
			delete(sh.states, a)
			return
		}
		if !found {
			victim, found = a, true
		}
		if n++; n >= evictScan {
			break
		}
	}
	if found {
		delete(sh.states, victim)
	}
}

// Len returns the number of clients held (for tests and metrics).
func (t *Table) Len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.states)
		sh.mu.Unlock()
	}
	return n
}
