package caddymodule

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/ratelimit"
	"github.com/keygate/keygate/usage"
)

// Stores and caches outlive a config: on reload the new handlers find the
// ones the old handlers used (same settings, same key) and take them
// over, so a reload neither reconnects to the database nor empties the
// cache. A setting that changes makes a new key, hence a new object.
// Apps are made anew with each config, so these pools are the keygate
// app's, at package level; only the app's methods reach into them.
var (
	stores    = caddy.NewUsagePool() // storeKey -> *sharedStore
	verifiers = caddy.NewUsagePool() // verifierKey -> *sharedVerifier
)

// storeKey holds every parameter a store is built from. The pepper check
// is part of it because the store verifies the pepper when it opens.
type storeKey struct {
	dsn         string
	pepperCheck keystore.Digest
	// previous holds the check values of the previous peppers of a
	// rotation, one after the other; next that of the next pepper.
	previous string
	next     keystore.Digest
}

// newStoreKey is the key of the store at dsn used with peppers.
func newStoreKey(dsn string, p keystore.Peppers) storeKey {
	var opts keystore.Options
	p.SetOptions(&opts)
	k := storeKey{dsn: dsn, pepperCheck: opts.PepperCheck, next: opts.NextPepperCheck}
	for _, c := range opts.PreviousPepperChecks {
		k.previous += string(c[:])
	}
	return k
}

// options are the options a store of key is opened with.
func (k storeKey) options() keystore.Options {
	opts := keystore.Options{PepperCheck: k.pepperCheck, NextPepperCheck: k.next}
	for i := 0; i+keystore.DigestLen <= len(k.previous); i += keystore.DigestLen {
		opts.PreviousPepperChecks = append(opts.PreviousPepperChecks, keystore.Digest([]byte(k.previous[i:i+keystore.DigestLen])))
	}
	return opts
}

// verifierKey holds every parameter a cache is built from.
type verifierKey struct {
	store storeKey
	cfg   cache.Config
}

// sharedStore is a store and the one watch on it that keeps every cache
// over it coherent.
type sharedStore struct {
	keystore.Store
	invalidator *cache.Invalidator
	stopHeads   context.CancelFunc
	headsDone   chan struct{}
	auditEvents atomic.Int64 // the audit chain's length when last read
	rehashes    *rehashes
}

func newSharedStore(s keystore.Store, dsn string) *sharedStore {
	logger := caddy.Log().Named("http.handlers.api_key")
	db := keystore.RedactDSN(dsn)
	ctx, stop := context.WithCancel(context.Background())
	st := &sharedStore{Store: s, stopHeads: stop, headsDone: make(chan struct{}), rehashes: newRehashes()}
	go func() {
		defer close(st.headsDone)
		st.watchAuditHead(ctx, logger.With(zap.String("database", db)), auditHeadPoll, auditHeadLog)
	}()
	var interruptions uint64 // the callback is called from one goroutine
	st.invalidator = cache.StartInvalidator(s, func(ok bool, err error) {
		if ok {
			logger.Info("watching key store for changes", zap.String("database", db), zap.Uint64("interruptions_total", interruptions))
		} else {
			interruptions++
			logger.Warn("key change watch interrupted; cached keys are re-checked every second until it is back",
				zap.String("database", db), zap.Uint64("interruptions_total", interruptions), zap.Error(err))
		}
	})
	return st
}

func (s *sharedStore) Destruct() error {
	s.stopHeads()
	<-s.headsDone
	s.invalidator.Stop()
	s.rehashes.stopAndWait()
	retireMetrics(s)
	s.Store.Close()
	return nil
}

type sharedVerifier struct {
	*cache.Verifier
	store    *sharedStore
	storeKey storeKey
}

func (v *sharedVerifier) Destruct() error {
	v.store.invalidator.Remove(v.Verifier)
	v.Verifier.Close()
	retireMetrics(v)
	_, err := stores.Delete(v.storeKey)
	return err
}

// acquireVerifier returns the cache for key, creating it (and its store)
// if no handler holds one. Each successful call must be matched by one
// releaseVerifier(key).
func (*App) acquireVerifier(ctx context.Context, key verifierKey) (*sharedVerifier, error) {
	val, _, err := verifiers.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, _, err := stores.LoadOrNew(key.store, func() (caddy.Destructor, error) {
			s, err := keystore.Open(ctx, key.store.dsn, key.store.options())
			if err != nil {
				return nil, err
			}
			st := newSharedStore(s, key.store.dsn)
			trackMetrics(st)
			return st, nil
		})
		if err != nil {
			return nil, err
		}
		store := st.(*sharedStore)
		v, err := cache.New(store.Store, key.cfg)
		if err != nil {
			stores.Delete(key.store)
			return nil, err
		}
		store.invalidator.Add(v)
		sv := &sharedVerifier{Verifier: v, store: store, storeKey: key.store}
		trackMetrics(sv)
		return sv, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*sharedVerifier), nil
}

// acquireStore returns the store of key, opening it if no handler holds
// it. Each successful call must be matched by one stores.Delete(key).
func (*App) acquireStore(ctx context.Context, key storeKey) (*sharedStore, error) {
	st, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := keystore.Open(ctx, key.dsn, key.options())
		if err != nil {
			return nil, err
		}
		st := newSharedStore(s, key.dsn)
		trackMetrics(st)
		return st, nil
	})
	if err != nil {
		return nil, err
	}
	return st.(*sharedStore), nil
}

// How often a gateway reads the audit chain's head (for the
// caddy_api_key_audit_events gauge, and to log a head that changed), and
// how often it logs the head even if it did not change.
const (
	auditHeadPoll = time.Minute
	auditHeadLog  = time.Hour
)

// watchAuditHead reads the audit chain's head at start and every poll
// until ctx ends, keeps its length in s.auditEvents, and logs it ("audit
// chain head", SEQ:HASH) at start, when it changed, and every logEvery
// anyway, so that the operator's log pipeline keeps a copy outside the
// database to verify the chain against (`caddy api-key audit --verify
// --head SEQ:HASH`). A failed read is logged and retried at the next poll.
func (s *sharedStore) watchAuditHead(ctx context.Context, logger *zap.Logger, poll, logEvery time.Duration) {
	var (
		last     audit.Head
		lastLog  time.Time
		failures int
	)
	for first := true; ; first = false {
		readCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		head, err := s.Head(readCtx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if failures++; failures == 1 || time.Since(lastLog) >= logEvery {
				lastLog = time.Now()
				logger.Warn("could not read the audit chain head; retrying", zap.Duration("retry_in", poll), zap.Error(err))
			}
		default:
			failures = 0
			s.auditEvents.Store(head.Seq)
			if first || head.Seq != last.Seq || !bytes.Equal(head.Hash, last.Hash) || time.Since(lastLog) >= logEvery {
				last, lastLog = head, time.Now()
				text := ""
				if head.Seq > 0 {
					text = head.String()
				}
				logger.Info("audit chain head", zap.String("head", text), zap.Int64("events", head.Seq))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(poll):
		}
	}
}

// releaseVerifier gives back a cache acquireVerifier returned; the last
// release closes it (and its store, if no other cache uses it). A handler
// releases when its config is unloaded, possibly after its app stopped:
// hence not a method of the app.
func releaseVerifier(key verifierKey) error {
	_, err := verifiers.Delete(key)
	return err
}

// recorders holds the usage recorders: one per store and usage
// configuration, shared by every handler on that store, kept across
// reloads so that counts not yet written survive them.
var recorders = caddy.NewUsagePool() // recorderKey -> *sharedRecorder

type recorderKey struct {
	store storeKey
	cfg   UsageConfig
}

// sharedRecorder is a usage recorder and the store it writes to (it holds
// a reference of its own, so that the store stays open until the last
// counts are written), plus the hourly pruning of old usage.
type sharedRecorder struct {
	*usage.Recorder
	store    *sharedStore
	storeKey storeKey
	logger   *zap.Logger
	stop     context.CancelFunc
	done     chan struct{}
}

// acquireRecorder returns the usage recorder for the store of key and the
// settings u, creating it if no handler holds one. Each successful call
// must be matched by one releaseRecorder.
func (*App) acquireRecorder(ctx context.Context, key verifierKey, u *UsageConfig) (*sharedRecorder, recorderKey, error) {
	rk := recorderKey{store: key.store, cfg: *u}
	val, _, err := recorders.LoadOrNew(rk, func() (caddy.Destructor, error) {
		st, _, err := stores.LoadOrNew(key.store, func() (caddy.Destructor, error) {
			return nil, errors.New("the key store is not open") // the verifier opened it
		})
		if err != nil {
			return nil, err
		}
		store := st.(*sharedStore)
		logger := caddy.Log().Named("http.handlers.api_key").With(zap.String("database", keystore.RedactDSN(key.store.dsn)))
		rec := usage.New(store.Store, usage.Config{
			FlushInterval: time.Duration(u.FlushInterval),
			MaxBuffered:   u.MaxBuffer,
			Logger:        logger,
		})
		pctx, stop := context.WithCancel(context.Background())
		sr := &sharedRecorder{Recorder: rec, store: store, storeKey: key.store, logger: logger, stop: stop, done: make(chan struct{})}
		go func() {
			defer close(sr.done)
			pruneUsage(pctx, store.Store, logger, time.Duration(u.Retention))
		}()
		trackMetrics(sr)
		return sr, nil
	})
	if err != nil {
		return nil, rk, err
	}
	return val.(*sharedRecorder), rk, nil
}

// releaseRecorder gives back a recorder; the last release writes what is
// left (see Destruct).
func releaseRecorder(key recorderKey) error {
	_, err := recorders.Delete(key)
	return err
}

// Destruct writes the counts not yet written, waiting up to
// usageCloseTimeout for the store, then lets go of the store.
func (r *sharedRecorder) Destruct() error {
	r.stop()
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), usageCloseTimeout)
	defer cancel()
	if err := r.Recorder.Close(ctx); err != nil {
		r.logger.Error("usage counts lost at shutdown: the key store did not take them in time",
			zap.Duration("waited", usageCloseTimeout), zap.Uint64("dropped_total", r.Stats.Dropped.Load()), zap.Error(err))
	}
	retireMetrics(r)
	_, err := stores.Delete(r.storeKey)
	return err
}

// pruneEvery is how often gateways delete usage older than the retention.
const pruneEvery = time.Hour

// pruneUsage deletes usage older than retention (none if negative) and
// old batch records, a minute after start and every hour, until ctx ends.
func pruneUsage(ctx context.Context, s keystore.Store, logger *zap.Logger, retention time.Duration) {
	wait := time.Minute
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = pruneEvery
		now := time.Now()
		usageBefore := time.Time{} // keep every row
		if retention > 0 {
			usageBefore = now.Add(-retention)
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		n, err := s.PruneUsage(pctx, usageBefore, now.Add(-usageBatchRetention))
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Warn("could not prune old usage; retrying in an hour", zap.Error(err))
		case n > 0:
			logger.Info("pruned old usage", zap.Int64("rows", n), zap.Duration("retention", retention))
		}
	}
}

// limiters holds the rate limiters' state: one per store (key ids are a
// store's) and capacity, kept across reloads so that a reload neither
// forgets nor resets a key's limit.
var limiters = caddy.NewUsagePool() // limiterKey -> *sharedLimiter

type limiterKey struct {
	store    storeKey
	capacity int
}

// sharedLimiter holds the rate-limit state of a store's keys, and of its
// owners for the limits an owner's keys share.
type sharedLimiter struct{ keys, owners *ratelimit.Keyed }

func (*sharedLimiter) Destruct() error { return nil }

// acquireLimiter returns the rate limiter for the keys of store. Each
// successful call must be matched by one releaseLimiter.
func (a *App) acquireLimiter(store storeKey) (*sharedLimiter, limiterKey, error) {
	key := limiterKey{store: store, capacity: a.rateLimitKeys()}
	val, _, err := limiters.LoadOrNew(key, func() (caddy.Destructor, error) {
		return &sharedLimiter{keys: ratelimit.NewKeyed(key.capacity), owners: ratelimit.NewKeyed(key.capacity)}, nil
	})
	if err != nil {
		return nil, key, err
	}
	return val.(*sharedLimiter), key, nil
}

func releaseLimiter(key limiterKey) error {
	_, err := limiters.Delete(key)
	return err
}

// counterPools holds the counters of quotas and uses: one per store and
// capacity, kept across reloads so that counts not yet written survive
// them, and written to the store every countSyncEvery.
var counterPools = caddy.NewUsagePool() // counterPoolKey -> *sharedCounters

type counterPoolKey struct {
	store    storeKey
	capacity int
}

// countSyncEvery is how often a gateway adds its counts to the store and
// reads the totals back: across N gateways a quota can be passed by what
// N-1 of them admit in this time.
const countSyncEvery = time.Second

// sharedCounters are a store's quota and uses counters, the store they
// are written to (it holds a reference of its own, so that the store
// stays open until the last counts are written), and the sync loop.
type sharedCounters struct {
	*ratelimit.Counters
	store    *sharedStore
	storeKey storeKey
	logger   *zap.Logger
	stop     context.CancelFunc
	done     chan struct{}

	mu            sync.Mutex // serialises syncs
	pending       *keystore.CountBatch
	pendingDeltas []ratelimit.CounterDelta
}

// acquireCounters returns the counters of the store of key. Each
// successful call must be matched by one releaseCounters.
func (a *App) acquireCounters(key verifierKey) (*sharedCounters, counterPoolKey, error) {
	ck := counterPoolKey{store: key.store, capacity: a.rateLimitKeys()}
	val, _, err := counterPools.LoadOrNew(ck, func() (caddy.Destructor, error) {
		st, _, err := stores.LoadOrNew(key.store, func() (caddy.Destructor, error) {
			return nil, errors.New("the key store is not open") // the verifier opened it
		})
		if err != nil {
			return nil, err
		}
		ctx, stop := context.WithCancel(context.Background())
		c := &sharedCounters{
			Counters: ratelimit.NewCounters(ck.capacity),
			store:    st.(*sharedStore),
			storeKey: key.store,
			logger:   caddy.Log().Named("http.handlers.api_key").With(zap.String("database", keystore.RedactDSN(key.store.dsn))),
			stop:     stop,
			done:     make(chan struct{}),
		}
		go c.loop(ctx)
		return c, nil
	})
	if err != nil {
		return nil, ck, err
	}
	return val.(*sharedCounters), ck, nil
}

func releaseCounters(key counterPoolKey) error {
	_, err := counterPools.Delete(key)
	return err
}

// counterSubject is a counter's subject in the store: "quota:<key id>".
func counterSubject(k ratelimit.CounterKey) string { return k.Kind + ":" + k.Subject }

// read returns a counter's total in the store.
func (c *sharedCounters) read(ctx context.Context, k ratelimit.CounterKey) (int64, error) {
	return c.store.Count(ctx, counterSubject(k), time.Unix(k.Start, 0))
}

func (c *sharedCounters) loop(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(countSyncEvery)
	defer t.Stop()
	failures := 0
	var lastLog time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.sync(wctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			if failures++; failures == 1 || time.Since(lastLog) >= time.Minute {
				lastLog = time.Now()
				c.logger.Warn("quota and uses counts not written yet; enforced from the last known totals plus this gateway's counts",
					zap.Int("attempts", failures), zap.Error(err))
			}
		case err == nil && failures > 0:
			c.logger.Info("quota and uses counts written again", zap.Int("failed_attempts", failures))
			failures = 0
		}
	}
}

// sync writes the batch whose write failed, if any, then what was counted
// since the last sync, and applies the store's totals: once the store is
// back, one sync writes everything counted during the outage.
func (c *sharedCounters) sync(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != nil {
		if err := c.writePending(ctx); err != nil {
			return err
		}
	}
	deltas := c.Collect(time.Now())
	if len(deltas) == 0 {
		return nil
	}
	b := &keystore.CountBatch{Deltas: make([]keystore.CountDelta, len(deltas))}
	rand.Read(b.ID[:])
	for i, d := range deltas {
		b.Deltas[i] = keystore.CountDelta{Subject: counterSubject(d.Key), Start: time.Unix(d.Key.Start, 0), N: d.N}
	}
	c.pending, c.pendingDeltas = b, deltas
	return c.writePending(ctx)
}

// writePending writes the pending batch (again, with the same id, after a
// failure) and applies the store's totals.
func (c *sharedCounters) writePending(ctx context.Context) error {
	totals, err := c.store.AddCounts(ctx, c.pending)
	if err != nil {
		return err
	}
	c.Written(c.pendingDeltas, totals)
	c.pending, c.pendingDeltas = nil, nil
	return nil
}

// Destruct writes the last counts, waiting up to usageCloseTimeout for the
// store, then lets go of the store.
func (c *sharedCounters) Destruct() error {
	c.stop()
	<-c.done
	ctx, cancel := context.WithTimeout(context.Background(), usageCloseTimeout)
	defer cancel()
	if err := c.sync(ctx); err != nil {
		c.logger.Error("quota and uses counts lost at shutdown: the key store did not take them in time", zap.Error(err))
	}
	_, err := stores.Delete(c.storeKey)
	return err
}
