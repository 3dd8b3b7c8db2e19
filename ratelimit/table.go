package ratelimit

import (
	"hash/maphash"
	"net/netip"
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
	states *states[netip.Addr]
}

// NewTable returns a table for limit holding at most capacity clients.
func NewTable(limit Limit, capacity int) *Table {
	return &Table{limit: limit, states: newStates(capacity, hashAddr)}
}

func hashAddr(seed maphash.Seed, a netip.Addr) uint64 {
	b := a.As16()
	return maphash.Bytes(seed, b[:])
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

// Exhausted reports whether the client at a has no budget left at now, and
// if so how long until it has.
func (t *Table) Exhausted(a netip.Addr, now time.Time) (bool, time.Duration) {
	s, ok := t.states.get(ClientKey(a))
	if !ok {
		return false, 0
	}
	_, allowed, wait := t.limit.Allow(s, now)
	return !allowed, wait
}

// Spend uses one unit of the client's budget. It reports false (and
// changes nothing) when none is left, with how long until one is.
func (t *Table) Spend(a netip.Addr, now time.Time) (bool, time.Duration) {
	_, ok, wait := t.states.allow(ClientKey(a), t.limit, now)
	return ok, wait
}

// Refund gives back one unit spent earlier: the event turned out not to
// count. A client no longer held (at rest, or evicted) has nothing to get
// back.
func (t *Table) Refund(a netip.Addr) { t.states.refund(ClientKey(a), t.limit.Interval) }

// Len returns the number of clients held (for tests and metrics).
func (t *Table) Len() int { return t.states.len() }
