package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/keystore"
)

// Step 2: hash the key with the pepper and ask the cache, and through it
// the store, what it knows of the digest, within the client's budget of
// failed checks.

// verifyKey sets x.key to the stored record of the request's key. In a
// pepper rotation, a key the current pepper does not find is looked for
// with the other peppers, and one found with a previous pepper is
// re-hashed with the current one.
func (h *Handler) verifyKey(x *exchange) verdict {
	current := h.hasher.Digest(x.parsed)
	key, err, v := h.find(x, current)
	if v.refused() {
		return v
	}
	if errors.Is(err, keystore.ErrNotFound) && h.peppers.Rotating() {
		for _, other := range h.otherPeppers {
			d := other.Digest(x.parsed)
			if key, err, v = h.find(x, d); v.refused() {
				return v
			}
			if errors.Is(err, keystore.ErrNotFound) {
				continue
			}
			if x.owed && lookupExcused(x.r, key, err, x.now) {
				// The current pepper's lookup was charged; the key exists.
				h.failures.refund(x.r)
				x.owed = false
			}
			if err == nil && h.peppers.IsPrevious(other) && key.Status(x.now) == keystore.StatusActive {
				h.verifier.store.rehash(h.logger, key, d, current, h.hasher.ID(), h.poolKey.cfg.QueryTimeout)
			}
			break
		}
	}
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return verdict{problem: h.problems.invalid, failed: true, why: "unknown API key"}
	case err != nil:
		v := verdict{problem: h.problems.unavailable}
		switch {
		case x.r.Context().Err() != nil:
			// The client left while its key was being looked up: not a
			// store problem worth an error log.
			v.why = "client went away during the key lookup"
		case errors.Is(err, cache.ErrBusy):
			v.why = "no key store query slot free in time; answering 503"
		default:
			h.storeError(err)
		}
		return v
	}
	x.key = key
	return verdict{}
}

// find asks the cache, and through it the store, about d.
func (h *Handler) find(x *exchange, d keystore.Digest) (*keystore.Key, error, verdict) {
	if key, err, cached := h.verifier.CachedAt(d, x.now); cached {
		return key, err, verdict{}
	}
	return h.lookup(x, d)
}

// lookup asks the store about d through the cache, within the client's
// budget. A lookup that starts a store query counts as a failed check
// until the store says the key exists (x.charged records that it was
// counted); joining a lookup of the same key already in flight costs no
// query and is free. A client out of budget, or whose share of lookups
// stays in flight too long, is refused. A request is charged once: the
// lookups with the other peppers of a rotation are free.
func (h *Handler) lookup(x *exchange, d keystore.Digest) (*keystore.Key, error, verdict) {
	r := x.r
	if h.failures == nil || x.charged || h.verifier.InFlight(d) {
		key, err := h.verifier.Verify(r.Context(), d)
		return key, err, verdict{}
	}
	h.noteProxy(r)
	if wait, over := h.failures.spend(r, x.now); over {
		return nil, nil, verdict{problem: h.problems.tooManyFailures, wait: wait, why: "client exceeded its budget of failed key checks"}
	}
	client, adm := h.pending.enter(r, h.poolKey.cfg.QueryTimeout, func() bool { return h.verifier.InFlight(d) })
	switch adm {
	case refused:
		h.failures.refund(r)
		return nil, nil, verdict{problem: h.problems.tooManyPending, wait: time.Second, why: "client's earlier key lookups did not finish in time"}
	case joinable:
		h.failures.refund(r)
		key, err := h.verifier.Verify(r.Context(), d)
		return key, err, verdict{}
	}
	key, err := h.verifier.Verify(r.Context(), d)
	h.pending.exit(client)
	if lookupExcused(r, key, err, x.now) {
		h.failures.refund(r)
	} else {
		x.owed = true
	}
	x.charged = true
	return key, err, verdict{}
}

// lookupExcused tells whether a store lookup charged to the client's
// budget is refunded: the key exists and is not revoked, or the store
// (not the client) failed. A lookup refused as busy, or abandoned by its
// client, stays charged: that is what a flood looks like.
func lookupExcused(r *http.Request, key *keystore.Key, err error, now time.Time) bool {
	if err == nil {
		return key.Status(now) != keystore.StatusRevoked
	}
	return errors.Is(err, cache.ErrUnavailable) && !errors.Is(err, cache.ErrBusy) && r.Context().Err() == nil
}

// storeError logs a failed store query: at error level at most once a
// second, so that an outage does not flood the log, and at debug level
// otherwise.
func (h *Handler) storeError(err error) {
	level := zapcore.DebugLevel
	t := h.clock.Now().UnixNano()
	if last := h.lastErrLog.Load(); t-last > int64(time.Second) && h.lastErrLog.CompareAndSwap(last, t) {
		level = zapcore.ErrorLevel
	}
	if ce := h.logger.Check(level, "key store unavailable; answering 503"); ce != nil {
		ce.Write(zap.Error(err), zap.Uint64("store_errors_total", h.verifier.Stats.StoreErrors.Load()))
	}
}

// cacheConfig is the verification cache's configuration.
func (h *Handler) cacheConfig() cache.Config {
	cfg := cache.Config{
		QueryTimeout: time.Duration(h.StoreTimeout),
		MaxQueries:   h.MaxStoreQueries,
		MaxStale:     defaultMaxStale,
		Clock:        h.clock,
	}
	if c := h.Cache; c != nil {
		cfg.MaxKeys = c.Size
		cfg.TTL = time.Duration(c.TTL)
		cfg.NegativeMaxKeys = c.NegativeSize
		cfg.NegativeTTL = time.Duration(c.NegativeTTL)
		if c.MaxStale != nil {
			cfg.MaxStale = time.Duration(*c.MaxStale)
		}
	}
	return cfg.WithDefaults()
}

// validateCache checks the cache and store query settings.
func (h *Handler) validateCache() error {
	if h.StoreTimeout < 0 {
		return fmt.Errorf("store_timeout must not be negative")
	}
	if h.StoreTimeout > 0 && time.Duration(h.StoreTimeout) < minStoreTimeout {
		return fmt.Errorf("store_timeout %v is too short for any key store query (every uncached key would get 503); use at least %v",
			time.Duration(h.StoreTimeout), minStoreTimeout)
	}
	if h.MaxStoreQueries < 0 {
		return fmt.Errorf("max_store_queries must not be negative")
	}
	c := h.Cache
	if c == nil {
		return nil
	}
	if c.Size < 0 || c.NegativeSize < 0 {
		return fmt.Errorf("cache sizes must not be negative")
	}
	if err := checkCacheSize("cache size", c.Size, bytesPerKey, totalMemory()); err != nil {
		return err
	}
	if err := checkCacheSize("cache negative_size", c.NegativeSize, bytesPerUnknownKey, totalMemory()); err != nil {
		return err
	}
	if c.TTL < 0 || (c.MaxStale != nil && *c.MaxStale < 0) || c.NegativeTTL < 0 {
		return fmt.Errorf("cache durations must not be negative")
	}
	return nil
}

// What a full cache costs per entry, about (measured by
// cache.TestCacheEntryCost; a key with long metadata costs more).
const (
	bytesPerKey        = 384
	bytesPerUnknownKey = 256
	maxCacheKeys       = 1 << 30
)

// checkCacheSize refuses a cache that could not fit in memory when full.
// Memory is not reserved for the size (entries take memory as keys are
// cached), but a size the machine cannot hold is a mistake.
func checkCacheSize(what string, n, perEntry int64, machine uint64) error {
	if n > maxCacheKeys {
		return fmt.Errorf("%s %d is more than %d", what, n, maxCacheKeys)
	}
	if need := uint64(n) * uint64(perEntry); machine > 0 && need > machine/2 {
		return fmt.Errorf("%s %d would take about %d MiB when full (about %d bytes per entry), more than half of this machine's %d MiB; "+
			"at most %d fits", what, n, need>>20, perEntry, machine>>20, machine/2/uint64(perEntry))
	}
	return nil
}
