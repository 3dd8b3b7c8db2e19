// Package cache puts an in-process cache in front of a key store so that
// the request path usually costs one HMAC and one map lookup.
//
// A Verifier answers "which key has this digest?" from three places:
//
//   - a positive cache (ristretto) of key records, trusted for TTL and, if
//     the store cannot be reached, served for up to MaxStale more;
//   - a separate, small negative cache of digests the store did not know,
//     so that a flood of random keys cannot push real keys out;
//   - the store, asked at most once at a time per digest (singleflight),
//     with a deadline, through a bounded number of concurrent queries.
//
// Invalidate and Purge drop entries when keys change; entries filled by a
// query that overlapped an invalidation are not kept, so a revocation can
// never be undone by a slow query that read the old row. An Invalidator
// calls them for every change the store reports, and while it cannot (its
// connection is down) the Verifier trusts entries for DegradedTTL only.
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
	"golang.org/x/sync/singleflight"

	"github.com/keygate/keygate/keystore"
)

// ErrUnavailable is matched (errors.Is) by every error that means "the
// store could not answer": the caller must fail closed (503), neither
// accepting nor rejecting the key.
var ErrUnavailable = errors.New("key store unavailable")

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
	// QueryTimeout is the deadline of every store query. Default 2s.
	QueryTimeout time.Duration
	// MaxQueries bounds concurrent store queries. Default 16.
	MaxQueries int
	// DegradedTTL replaces TTL while key changes are not being delivered
	// (an Invalidator lost its connection), so that a change is still
	// seen quickly. Default 1s.
	DegradedTTL time.Duration
}

// Defaults for Config.
const (
	DefaultMaxKeys         = 100_000
	DefaultTTL             = 30 * time.Second
	DefaultNegativeMaxKeys = 10_000
	DefaultNegativeTTL     = 10 * time.Second
	DefaultQueryTimeout    = 2 * time.Second
	DefaultMaxQueries      = 16
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
	if c.DegradedTTL <= 0 {
		c.DegradedTTL = DefaultDegradedTTL
	}
	c.DegradedTTL = min(c.DegradedTTL, c.TTL)
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
	Invalidations atomic.Uint64 // digests dropped by Invalidate
	Purges        atomic.Uint64 // calls of Purge
}

type entry struct {
	key     *keystore.Key
	fetched time.Time
	epoch   uint64 // purge epoch at fill time
}

type negEntry struct {
	digest  keystore.Digest
	expires time.Time
	epoch   uint64
}

// Verifier is a read-through cache over a Lookuper. Create it with New;
// it is safe for concurrent use. Close it to stop its goroutines.
type Verifier struct {
	store Lookuper
	cfg   Config
	now   func() time.Time

	pos *ristretto.Cache[uint64, *entry]
	neg *ristretto.Cache[uint64, *negEntry]

	flight singleflight.Group
	sem    chan struct{}

	// gens[d[0]] changes whenever a digest starting with that byte is
	// invalidated; a fill whose generation moved during its query is not
	// cached. epoch changes on Purge and retires every older entry.
	gens  [256]atomic.Uint64
	epoch atomic.Uint64

	storeDown atomic.Bool // the last store query failed
	degraded  atomic.Bool // changes are not being delivered: use DegradedTTL

	mu         sync.Mutex // guards closed against new background work
	closed     bool
	refreshing sync.Map       // slot -> struct{}: stale entries being re-read
	background sync.WaitGroup // store queries and refreshes in flight

	Stats Stats
}

// New returns a Verifier over store.
func New(store Lookuper, cfg Config) (*Verifier, error) {
	cfg = cfg.WithDefaults()
	pos, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		NumCounters:        cfg.MaxKeys * 10,
		MaxCost:            cfg.MaxKeys,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating key cache: %w", err)
	}
	neg, err := ristretto.NewCache(&ristretto.Config[uint64, *negEntry]{
		NumCounters:        cfg.NegativeMaxKeys * 10,
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
		now:   time.Now,
		pos:   pos,
		neg:   neg,
		sem:   make(chan struct{}, cfg.MaxQueries),
	}, nil
}

// slot is the cache key of a digest. Digests are HMAC outputs, so their
// first 8 bytes are uniformly distributed; entries keep the full digest
// and a hit is only a hit if it matches.
func slot(d keystore.Digest) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

// Verify returns the record of the key with digest d, whatever its status
// (the caller decides about revoked or expired keys). It returns an error
// matching keystore.ErrNotFound for an unknown digest and ErrUnavailable
// when the store could not be asked in time.
func (v *Verifier) Verify(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	now := v.now()
	epoch := v.epoch.Load()
	if e, ok := v.pos.Get(slot(d)); ok && e.key.Digest == d {
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
	if n, ok := v.neg.Get(slot(d)); ok && n.epoch == epoch && n.digest == d && now.Before(n.expires) {
		v.Stats.NegativeHits.Add(1)
		return nil, keystore.ErrNotFound
	}
	return v.miss(ctx, d)
}

// refreshStale answers for an entry that must be re-read (past its TTL,
// or purged) but may still be served for a while if the store fails.
// While the store answers, it asks the store first, so a change is seen as
// soon as TTL runs out. While the store is failing, it serves the entry at
// once and asks in the background, so that cached keys keep working
// without each request waiting for a query that will time out.
func (v *Verifier) refreshStale(ctx context.Context, d keystore.Digest, e *entry) (*keystore.Key, error) {
	if !v.storeDown.Load() {
		k, err := v.miss(ctx, d)
		if !errors.Is(err, ErrUnavailable) {
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
	v.Stats.Misses.Add(1)
	ch := v.flight.DoChan(string(d[:]), func() (any, error) { return v.fill(d) })
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*keystore.Key), nil
	case <-ctx.Done():
		return nil, &unavailableError{ctx.Err()}
	}
}

// fill asks the store about d and caches the answer, unless d was
// invalidated while the query ran.
func (v *Verifier) fill(d keystore.Digest) (*keystore.Key, error) {
	if !v.enter() {
		return nil, &unavailableError{errors.New("key cache closed")}
	}
	defer v.background.Done()
	gen := v.gens[d[0]].Load()
	epoch := v.epoch.Load()
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.QueryTimeout)
	defer cancel()
	select {
	case v.sem <- struct{}{}:
	case <-ctx.Done():
		v.Stats.StoreErrors.Add(1)
		v.storeDown.Store(true)
		return nil, &unavailableError{errors.New("too many concurrent key store queries")}
	}
	v.Stats.StoreQueries.Add(1)
	// The answer is as old as the query's start: what changed after that
	// may not be in it.
	fetched := v.now()
	k, err := v.store.Lookup(ctx, d)
	<-v.sem
	v.storeDown.Store(err != nil && !errors.Is(err, keystore.ErrNotFound))
	keep := v.gens[d[0]].Load() == gen && v.epoch.Load() == epoch
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		if keep {
			v.neg.SetWithTTL(slot(d), &negEntry{digest: d, expires: fetched.Add(v.cfg.NegativeTTL), epoch: epoch}, 1, v.cfg.NegativeTTL)
			// Make the entry visible before the next request can miss:
			// ristretto applies new entries asynchronously.
			v.neg.Wait()
		}
		return nil, keystore.ErrNotFound
	case err != nil:
		v.Stats.StoreErrors.Add(1)
		return nil, &unavailableError{err}
	}
	if k.Digest != d {
		v.Stats.StoreErrors.Add(1)
		return nil, &unavailableError{errors.New("key store returned a record for another digest")}
	}
	if keep {
		v.pos.SetWithTTL(slot(d), &entry{key: k, fetched: fetched, epoch: epoch}, 1, v.cfg.TTL+v.cfg.MaxStale)
		v.pos.Wait()
	}
	return k, nil
}

// refreshAsync re-reads a stale entry in the background, one goroutine
// per digest at most.
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
		_, err, _ := v.flight.Do(string(d[:]), func() (any, error) { return v.fill(d) })
		if errors.Is(err, keystore.ErrNotFound) {
			// The key is gone from the store: stop serving it.
			v.pos.Del(s)
		}
	}()
}

// enter registers background work (a store query or a refresh) so that
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
func (v *Verifier) Invalidate(d keystore.Digest) {
	v.gens[d[0]].Add(1)
	v.pos.Del(slot(d))
	v.neg.Del(slot(d))
	v.flight.Forget(string(d[:]))
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
	for i := range v.gens {
		v.gens[i].Add(1)
	}
	v.Stats.Purges.Add(1)
}

// Close waits for store queries in flight, stops background work and
// releases the caches.
func (v *Verifier) Close() {
	v.mu.Lock()
	already := v.closed
	v.closed = true
	v.mu.Unlock()
	if already {
		return
	}
	v.background.Wait()
	v.pos.Close()
	v.neg.Close()
}
