package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// states holds one GCRA state per key in a fixed number of entries,
// spread over shards so that no lock is taken by every request. When a
// shard is full, an entry at rest (one that behaves exactly like a key
// never seen) is dropped to make room, which loses nothing; if every
// entry sampled is busy, an arbitrary one is dropped, which can only give
// that key a fresh burst, never refuse one that should pass.
type states[K comparable] struct {
	seed   maphash.Seed
	hash   func(maphash.Seed, K) uint64
	shards [shardCount]stateShard[K]
	per    int // capacity of one shard
}

type stateShard[K comparable] struct {
	mu sync.Mutex
	m  map[K]State
	_  [40]byte // keeps neighbouring shards' locks off one cache line
}

// shardCount spreads lock contention; a power of two.
const shardCount = 64

// evictScan is how many entries a full shard looks at to find one to drop.
const evictScan = 16

func newStates[K comparable](capacity int, hash func(maphash.Seed, K) uint64) *states[K] {
	s := &states[K]{seed: maphash.MakeSeed(), hash: hash, per: max(1, (capacity+shardCount-1)/shardCount)}
	for i := range s.shards {
		s.shards[i].m = make(map[K]State)
	}
	return s
}

func (s *states[K]) shard(k K) *stateShard[K] {
	return &s.shards[s.hash(s.seed, k)%shardCount]
}

// allow records one event for k at now under l, if l allows it, and
// returns the state after it (the state before, when refused).
func (s *states[K]) allow(k K, l Limit, now time.Time) (State, bool, time.Duration) {
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old, held := sh.m[k]
	next, ok, wait := l.Allow(old, now)
	if !ok {
		return old, false, wait
	}
	if !held && len(sh.m) >= s.per {
		sh.evict(now)
	}
	sh.m[k] = next
	return next, true, 0
}

// get returns k's state (zero when not held).
func (s *states[K]) get(k K) (State, bool) {
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, ok := sh.m[k]
	return st, ok
}

// refund takes back one event of interval recorded for k.
func (s *states[K]) refund(k K, interval time.Duration) {
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st, ok := sh.m[k]; ok {
		sh.m[k] = st - State(interval)
	}
}

// evict drops one entry, preferring one at rest. Map iteration order is
// random, so the scan samples the shard.
func (sh *stateShard[K]) evict(now time.Time) {
	var victim K
	found := false
	n := 0
	for k, st := range sh.m {
		if st.idle(now) {
			delete(sh.m, k)
			return
		}
		if !found {
			victim, found = k, true
		}
		if n++; n >= evictScan {
			break
		}
	}
	if found {
		delete(sh.m, victim)
	}
}

// len returns the number of keys held.
func (s *states[K]) len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
