// Package cache puts an in-process cache in front of a key store so that
// the request path usually costs one HMAC and one map lookup.
//
// A Verifier answers "which key has this digest?" from three places:
//
//   - a positive cache (ristretto) of key records, trusted for TTL and, if
//     the store cannot be reached, served for up to MaxStale more;
//   - a separate, small negative cache of digests the store did not know,
//     so that a flood of random keys cannot push real keys out;
//   - the store, asked at most once at a time per digest (see flights),
//     with a deadline, through a bounded number of concurrent queries and
//     a bounded queue in front of them. A lookup every requester has
//     abandoned is cancelled.
//
// Invalidate and Purge drop entries when keys change. Every entry carries
// the invalidation generation and purge epoch it was read under, and an
// entry from an older generation is never served: a revocation can
// therefore never be undone by a slow query that read the old row, even
// when that query's answer reaches the cache after the invalidation. An
// Invalidator calls them for every change the store reports, and while it
// cannot (its connection is down) the Verifier trusts entries for
// DegradedTTL only.
package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
)

// ErrUnavailable is matched (errors.Is) by every error that means "the
// store could not answer": the caller must fail closed (503), neither
// accepting nor rejecting the key.
var ErrUnavailable = errors.New("key store unavailable")

// ErrBusy is matched (errors.Is) by the error of a lookup that could not
// get a query slot in time: the store is busy with other queries, not
// down. It matches ErrUnavailable as well, so callers still fail closed,
// but it is neither counted nor reported as a store error.
var ErrBusy = errors.New("too many key store queries waiting")

type unavailableError struct{ err error }

func (e *unavailableError) Error() string        { return "key store unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() error        { return e.err }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

// Lookuper is the part of a keystore.Store the Verifier needs.
type Lookuper interface {
	Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error)
}

// Config tunes a Verifier. Zero fields take the defaults below.
type Config struct {
	// MaxKeys bounds the positive cache, in keys. Default 100,000.
	MaxKeys int64
	// TTL is how long a cached key is trusted without asking the store.
	// Default 30s.
	TTL time.Duration
	// MaxStale is how much longer than TTL a cached key keeps working
	// while the store cannot be reached. Default 0: never serve stale.
	MaxStale time.Duration
	// NegativeMaxKeys bounds the negative cache, in digests. Default 10,000.
	NegativeMaxKeys int64
	// NegativeTTL is how long an unknown digest is remembered. Default 10s.
	NegativeTTL time.Duration
	// QueryTimeout is the deadline of every store query, and separately
	// of the wait for a query slot before it. Default 2s.
	QueryTimeout time.Duration
	// MaxQueries bounds concurrent store queries. Default 16.
	MaxQueries int
	// MaxQueued bounds the lookups waiting for a query slot; more fail at
	// once with ErrBusy. Default 32 × MaxQueries.
	MaxQueued int
	// DegradedTTL replaces TTL while key changes are not being delivered
	// (an Invalidator lost its connection), so that a change is still
	// seen quickly. Default 1s.
	DegradedTTL time.Duration
	// Clock decides the age of entries. Default clock.System.
	Clock clock.Clock
}

// Defaults for Config.
const (
	DefaultMaxKeys         = 100_000
	DefaultTTL             = 30 * time.Second
	DefaultNegativeMaxKeys = 10_000
	DefaultNegativeTTL     = 10 * time.Second
	DefaultQueryTimeout    = 2 * time.Second
	DefaultMaxQueries      = 16
	DefaultQueuedPerQuery  = 32
	DefaultDegradedTTL     = time.Second
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.NegativeMaxKeys <= 0 {
		c.NegativeMaxKeys = DefaultNegativeMaxKeys
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.MaxQueries <= 0 {
		c.MaxQueries = DefaultMaxQueries
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = DefaultQueuedPerQuery * c.MaxQueries
	}
	if c.DegradedTTL <= 0 {
		c.DegradedTTL = DefaultDegradedTTL
	}
	c.DegradedTTL = min(c.DegradedTTL, c.TTL)
	c.Clock = clock.Or(c.Clock)
	return c
}

// Stats are running counts, for metrics and tests.
type Stats struct {
	Hits          atomic.Uint64 // answered from the positive cache within TTL
	StaleHits     atomic.Uint64 // served beyond TTL because the store failed
	NegativeHits  atomic.Uint64 // answered from the negative cache
	Misses        atomic.Uint64 // had to wait for the store
	StoreQueries  atomic.Uint64 // queries sent to the store
	StoreErrors   atomic.Uint64 // queries that failed or timed out
	Busy          atomic.Uint64 // lookups that got no query slot in time (ErrBusy)
	Abandoned     atomic.Uint64 // lookups cancelled because every requester left
	Invalidations atomic.Uint64 // digests dropped by Invalidate
	Purges        atomic.Uint64 // calls of Purge
}

type entry struct {
	key     *keystore.Key
	fetched time.Time
	gen     uint64 // generation of the digest's bucket when the query started
	epoch   uint64 // purge epoch when the query started
}

type negEntry struct {
	digest  keystore.Digest
	expires time.Time
	gen     uint64
	epoch   uint64
}

// genBuckets is the number of invalidation generations. An invalidation
// makes the entries of its bucket (1/genBuckets of all keys) re-read
// once; more buckets cost 8 bytes each.
const genBuckets = 4096

// Verifier is a read-through cache over a Lookuper. Create it with New;
// it is safe for concurrent use. Close it to stop its goroutines.
type Verifier struct {
	store Lookuper
	cfg   Config
	clock clock.Clock

	pos *ristretto.Cache[uint64, *entry]
	neg *ristretto.Cache[uint64, *negEntry]

	flights flights
	sem     chan struct{} // query slots
	queued  atomic.Int64  // lookups waiting for a slot

	// gens[bucket(d)] changes whenever a digest in that bucket is
	// invalidated. An entry read under an older generation is not served
	// and not kept. epoch changes on Purge: entries from an older epoch
	// are re-read, but may still stand in while the store fails.
	gens  [genBuckets]atomic.Uint64
	epoch atomic.Uint64

	storeDown atomic.Bool // the last store query failed
	degraded  atomic.Bool // changes are not being delivered: use DegradedTTL

	mu         sync.Mutex // guards closed against new background work
	closed     bool
	refreshing sync.Map       // slot -> struct{}: stale entries being re-read
	background sync.WaitGroup // store lookups and refreshes in flight

	Stats Stats

	// beforeSet, if set, runs in fill after the decision to keep an
	// answer and before it is stored: tests use it to land an
	// invalidation in that window.
	beforeSet func(keystore.Digest)
}

// New returns a Verifier over store.
func New(store Lookuper, cfg Config) (*Verifier, error) {
	cfg = cfg.WithDefaults()
	pos, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		NumCounters:        counters(cfg.MaxKeys),
		MaxCost:            cfg.MaxKeys,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating key cache: %w", err)
	}
	neg, err := ristretto.NewCache(&ristretto.Config[uint64, *negEntry]{
		NumCounters:        counters(cfg.NegativeMaxKeys),
		MaxCost:            cfg.NegativeMaxKeys,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		pos.Close()
		return nil, fmt.Errorf("creating negative key cache: %w", err)
	}
	return &Verifier{
		store: store,
		cfg:   cfg,
		clock: cfg.Clock,
		pos:   pos,
		neg:   neg,
		sem:   make(chan struct{}, cfg.MaxQueries),
	}, nil
}

// maxCounters caps ristretto's admission counters. They are allocated up
// front (about 3 bytes each), so they must not follow a large configured
// size: ten per key up to 100,000 keys, then no more. A larger cache
// admits keys with a less exact frequency estimate; its entries
// themselves take memory only as keys are cached.
const maxCounters = 1 << 20

func counters(maxKeys int64) int64 { return min(maxKeys*10, maxCounters) }

// slot is the cache key of a digest. Digests are HMAC outputs, so their
// first 8 bytes are uniformly distributed; entries keep the full digest
// and a hit is only a hit if it matches.
func slot(d keystore.Digest) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

// gen is the invalidation generation of d's bucket.
func (v *Verifier) gen(d keystore.Digest) *atomic.Uint64 {
	return &v.gens[binary.LittleEndian.Uint16(d[8:10])%genBuckets]
}

// Verify returns the record of the key with digest d, whatever its status
// (the caller decides about revoked or expired keys). It returns an error
// matching keystore.ErrNotFound for an unknown digest and ErrUnavailable
// when the store could not be asked in time.
func (v *Verifier) Verify(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	now := v.clock.Now()
	epoch := v.epoch.Load()
	gen := v.gen(d).Load()
	if e, ok := v.pos.Get(slot(d)); ok && e.gen == gen && e.key.Digest.Equal(d) {
		age := now.Sub(e.fetched)
		ttl := v.cfg.TTL
		if v.degraded.Load() {
			ttl = v.cfg.DegradedTTL
		}
		if age <= ttl && e.epoch == epoch {
			v.Stats.Hits.Add(1)
			return e.key, nil
		}
		// Too old, or from before a Purge: ask the store, but keep the
		// entry as a fallback should the store fail.
		if age <= v.cfg.TTL+v.cfg.MaxStale {
			return v.refreshStale(ctx, d, e)
		}
	}
	if n, ok := v.neg.Get(slot(d)); ok && n.epoch == epoch && n.gen == gen && n.digest.Equal(d) && now.Before(n.expires) {
		v.Stats.NegativeHits.Add(1)
		return nil, keystore.ErrNotFound
	}
	return v.miss(ctx, d)
}

// Cached answers from the caches alone: found is false when Verify would
// have to ask the store (a miss, or an entry past its TTL). Callers use it
// to decide whether a request may cost a store query at all.
func (v *Verifier) Cached(d keystore.Digest) (k *keystore.Key, err error, found bool) {
	return v.CachedAt(d, v.clock.Now())
}

// CachedAt is Cached with the time now given by a caller that has just
// read the verifier's clock: reading it costs about 100 ns on some
// virtual machines, a tenth of a cache hit.
func (v *Verifier) CachedAt(d keystore.Digest, now time.Time) (k *keystore.Key, err error, found bool) {
	epoch := v.epoch.Load()
	gen := v.gen(d).Load()
	if e, ok := v.pos.Get(slot(d)); ok && e.gen == gen && e.epoch == epoch && e.key.Digest.Equal(d) {
		ttl := v.cfg.TTL
		if v.degraded.Load() {
			ttl = v.cfg.DegradedTTL
		}
		if now.Sub(e.fetched) <= ttl {
			v.Stats.Hits.Add(1)
			return e.key, nil, true
		}
	}
	if n, ok := v.neg.Get(slot(d)); ok && n.epoch == epoch && n.gen == gen && n.digest.Equal(d) && now.Before(n.expires) {
		v.Stats.NegativeHits.Add(1)
		return nil, keystore.ErrNotFound, true
	}
	return nil, nil, false
}

// Queued returns how many lookups wait for a query slot now.
func (v *Verifier) Queued() int { return int(v.queued.Load()) }

// InFlight reports whether a store lookup of d is in flight: a Verify of
// d now would most likely wait for it rather than start a query.
func (v *Verifier) InFlight(d keystore.Digest) bool { return v.flights.has(d) }

// refreshStale answers for an entry that must be re-read (past its TTL,
// or purged) but may still be served for a while if the store fails.
// While the store answers, it asks the store first, so a change is seen as
// soon as TTL runs out. While the store is failing, it serves the entry at
// once and asks in the background, so that cached keys keep working
// without each request waiting for a query that will time out.
func (v *Verifier) refreshStale(ctx context.Context, d keystore.Digest, e *entry) (*keystore.Key, error) {
	if !v.storeDown.Load() {
		k, err := v.miss(ctx, d)
		if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return k, err
		}
	} else {
		v.refreshAsync(d)
	}
	v.Stats.StaleHits.Add(1)
	return e.key, nil
}

// miss waits for the store's answer about d. It is a separate function
// so that the hit path above does not move d to the heap.
func (v *Verifier) miss(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	c, ok := v.lookup(d)
	if !ok {
		return nil, &unavailableError{errors.New("key cache closed")}
	}
	// Counted once joined: a miss counted is a request waiting for the
	// lookup in flight (tests count on it).
	v.Stats.Misses.Add(1)
	select {
	case <-c.done:
		return c.key, c.err
	case <-ctx.Done():
		v.flights.leave(d, c)
		return nil, &unavailableError{ctx.Err()}
	}
}

// lookup joins the store lookup of d in flight, starting one if there is
// none. It fails once the Verifier is closing.
func (v *Verifier) lookup(d keystore.Digest) (*call, bool) {
	if !v.enter() {
		return nil, false
	}
	c, started := v.flights.join(d)
	if !started {
		v.background.Done()
		return c, true
	}
	go func() {
		defer v.background.Done()
		k, err := v.fill(c.ctx, d)
		v.flights.finish(d, c, k, err)
	}()
	return c, true
}

// errAbandoned is the answer of a lookup nobody waits for any more.
var errAbandoned = errors.New("key lookup abandoned by every requester")

// fill asks the store about d and caches the answer, unless d was
// invalidated while the query ran. ctx ends when nobody waits any more.
func (v *Verifier) fill(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	gen := v.gen(d).Load()
	epoch := v.epoch.Load()
	// The wait for a slot and the query have a deadline each: a query
	// that got its slot late must not time out for it and be taken for a
	// slow store.
	wctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
	err := v.acquire(wctx, ctx)
	cancel()
	if err != nil {
		return nil, err
	}
	qctx, cancel := context.WithTimeout(ctx, v.cfg.QueryTimeout)
	defer cancel()
	v.Stats.StoreQueries.Add(1)
	// The answer is as old as the query's start: what changed after that
	// may not be in it.
	fetched := v.clock.Now()
	k, err := v.store.Lookup(qctx, d)
	<-v.sem
	if err != nil && ctx.Err() != nil {
		// Cancelled because every requester left: says nothing about the
		// store.
		v.Stats.Abandoned.Add(1)
		return nil, &unavailableError{errAbandoned}
	}
	v.storeDown.Store(err != nil && !errors.Is(err, keystore.ErrNotFound))
	keep := v.gen(d).Load() == gen && v.epoch.Load() == epoch
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		if keep {
			if v.beforeSet != nil {
				v.beforeSet(d)
			}
			v.neg.SetWithTTL(slot(d), &negEntry{digest: d, expires: fetched.Add(v.cfg.NegativeTTL), gen: gen, epoch: epoch}, 1, v.cfg.NegativeTTL)
			// Make the entry visible before the next request can miss:
			// ristretto applies new entries asynchronously.
			v.neg.Wait()
		}
		return nil, keystore.ErrNotFound
	case err != nil:
		v.Stats.StoreErrors.Add(1)
		return nil, &unavailableError{err}
	}
	if !k.Digest.Equal(d) {
		v.Stats.StoreErrors.Add(1)
		return nil, &unavailableError{errors.New("key store returned a record for another digest")}
	}
	if keep {
		if v.beforeSet != nil {
			v.beforeSet(d)
		}
		v.pos.SetWithTTL(slot(d), &entry{key: k, fetched: fetched, gen: gen, epoch: epoch}, 1, v.cfg.TTL+v.cfg.MaxStale)
		v.pos.Wait()
	}
	return k, nil
}

// acquire takes a query slot, waiting in a bounded queue until wctx ends.
// A full queue fails at once. Neither counts as a store error: the store
// is busy with other queries. abandon is the context that ends when no
// requester waits any more.
func (v *Verifier) acquire(wctx, abandon context.Context) error {
	select {
	case v.sem <- struct{}{}:
		return nil
	default:
	}
	if v.queued.Add(1) > int64(v.cfg.MaxQueued) {
		v.queued.Add(-1)
		v.Stats.Busy.Add(1)
		return &unavailableError{ErrBusy}
	}
	defer v.queued.Add(-1)
	select {
	case v.sem <- struct{}{}:
		return nil
	case <-wctx.Done():
		if abandon.Err() != nil {
			v.Stats.Abandoned.Add(1)
			return &unavailableError{errAbandoned}
		}
		v.Stats.Busy.Add(1)
		return &unavailableError{ErrBusy}
	}
}

// refreshAsync re-reads a stale entry in the background, one goroutine
// per digest at most. It waits for the lookup like a requester that never
// leaves, so the lookup is not cancelled when the requests that served
// the stale entry are gone.
func (v *Verifier) refreshAsync(d keystore.Digest) {
	s := slot(d)
	if _, busy := v.refreshing.LoadOrStore(s, struct{}{}); busy {
		return
	}
	if !v.enter() {
		v.refreshing.Delete(s)
		return
	}
	go func() {
		defer v.background.Done()
		defer v.refreshing.Delete(s)
		c, ok := v.lookup(d)
		if !ok {
			return
		}
		<-c.done
		if errors.Is(c.err, keystore.ErrNotFound) {
			// The key is gone from the store: stop serving it.
			v.pos.Del(s)
		}
	}()
}

// enter registers background work (a store lookup or a refresh) so that
// Close can wait for it; it fails once Close has begun. The caller must
// call v.background.Done when it succeeds.
func (v *Verifier) enter() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return false
	}
	v.background.Add(1)
	return true
}

// Invalidate forgets d in both caches; the next request asks the store.
// Entries of d read before this call are never served again, even one
// that a query in flight stores afterwards.
func (v *Verifier) Invalidate(d keystore.Digest) {
	v.gen(d).Add(1)
	v.pos.Del(slot(d))
	v.neg.Del(slot(d))
	v.flights.forget(d)
	v.Stats.Invalidations.Add(1)
}

// Purge makes every entry stale: each key is re-read from the store on
// its next use, and unknown keys are asked about again. It is what an
// instance must do when it may have missed invalidations (a lost
// notification channel). Purged entries still serve as the fallback for
// their remaining staleness window if the store then fails, so a purge
// during an outage does not turn cached keys into 503s.
func (v *Verifier) Purge() {
	v.epoch.Add(1)
	v.Stats.Purges.Add(1)
}

// Close cancels store lookups in flight, waits for them and for background
// work, and releases the caches.
func (v *Verifier) Close() {
	v.mu.Lock()
	already := v.closed
	v.closed = true
	v.mu.Unlock()
	if already {
		return
	}
	v.flights.cancelAll()
	v.background.Wait()
	v.pos.Close()
	v.neg.Close()
}
