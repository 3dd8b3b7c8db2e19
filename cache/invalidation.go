package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Watcher is the part of a keystore.Store that reports key changes.
type Watcher interface {
	Watch(ctx context.Context, h keystore.ChangeHandler) error
}

// Invalidator watches one store and applies its key changes to every
// Verifier over that store: one listening connection (or poller) per
// store and process, however many caches and configs share it.
type Invalidator struct {
	onHealth func(ok bool, err error)

	mu        sync.Mutex
	verifiers map[*Verifier]struct{}
	healthy   bool

	malformed atomic.Uint64 // see Malformed
	resyncs   atomic.Uint64 // see Resyncs

	purgeTAT time.Time   // GCRA state of the purge budget; guarded by mu
	deferred *time.Timer // a purge held back by the budget
	stopped  bool

	cancel context.CancelFunc
	done   chan struct{}
}

// StartInvalidator starts watching w. onHealth, if not nil, is told when
// change delivery starts and stops working (for logging).
func StartInvalidator(w Watcher, onHealth func(ok bool, err error)) *Invalidator {
	ctx, cancel := context.WithCancel(context.Background())
	inv := &Invalidator{
		onHealth:  onHealth,
		verifiers: map[*Verifier]struct{}{},
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	go func() {
		defer close(inv.done)
		w.Watch(ctx, inv)
	}()
	return inv
}

// Add starts applying changes to v. Until change delivery is working, v
// treats its entries as short-lived (see Config.DegradedTTL).
func (inv *Invalidator) Add(v *Verifier) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.verifiers[v] = struct{}{}
	v.degraded.Store(!inv.healthy)
}

// Remove stops applying changes to v. When it returns, no call into v
// from the invalidator is running or will run.
func (inv *Invalidator) Remove(v *Verifier) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	delete(inv.verifiers, v)
}

// Stop ends the watch and waits for it.
func (inv *Invalidator) Stop() {
	inv.cancel()
	<-inv.done
	inv.mu.Lock()
	inv.stopped = true
	if inv.deferred != nil {
		inv.deferred.Stop()
		inv.deferred = nil
	}
	inv.mu.Unlock()
}

// IsHealthy reports whether change delivery is working.
func (inv *Invalidator) IsHealthy() bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.healthy
}

// KeyChanged implements keystore.ChangeHandler.
func (inv *Invalidator) KeyChanged(d keystore.Digest) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for v := range inv.verifiers {
		v.Invalidate(d)
	}
}

// Resync purges are budgeted: purgeBurst at once, then one per
// minPurgeInterval. A purge makes every cached key cost a store query on
// its next use; a watch that reconnects again and again must not turn
// into a storm of them. Purges asked for beyond the budget are folded into
// one when it allows, so none is lost: a change missed by the watch is
// still seen within minPurgeInterval (and while the watch was down,
// entries were trusted for DegradedTTL only).
const purgeBurst = 10

var minPurgeInterval = time.Second

// Resync implements keystore.ChangeHandler.
func (inv *Invalidator) Resync() {
	inv.resyncs.Add(1)
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.stopped || inv.deferred != nil {
		return // a purge is already due, and will cover this one
	}
	now := time.Now()
	tat := inv.purgeTAT
	if tat.Before(now) {
		tat = now
	}
	tat = tat.Add(minPurgeInterval)
	if wait := tat.Sub(now) - purgeBurst*minPurgeInterval; wait > 0 {
		inv.deferred = time.AfterFunc(wait, func() {
			inv.mu.Lock()
			defer inv.mu.Unlock()
			inv.deferred = nil
			if !inv.stopped {
				inv.purgeTAT = tat
				inv.purgeLocked()
			}
		})
		return
	}
	inv.purgeTAT = tat
	inv.purgeLocked()
}

func (inv *Invalidator) purgeLocked() {
	for v := range inv.verifiers {
		v.Purge()
	}
}

// MalformedChange implements keystore.ChangeHandler: the change is
// ignored, only counted.
func (inv *Invalidator) MalformedChange() { inv.malformed.Add(1) }

// Resyncs returns how many resyncs the watch asked for (once per
// connection it made); purges may be fewer, see purgeBurst.
func (inv *Invalidator) Resyncs() uint64 { return inv.resyncs.Load() }

// Malformed returns how many change notifications were ignored because
// they were not key digests (see keystore.ChangeHandler).
func (inv *Invalidator) Malformed() uint64 { return inv.malformed.Load() }

// Healthy implements keystore.ChangeHandler.
func (inv *Invalidator) Healthy(ok bool, err error) {
	inv.mu.Lock()
	changed := inv.healthy != ok
	inv.healthy = ok
	for v := range inv.verifiers {
		v.degraded.Store(!ok)
	}
	inv.mu.Unlock()
	if changed && inv.onHealth != nil {
		inv.onHealth(ok, err)
	}
}

var _ keystore.ChangeHandler = (*Invalidator)(nil)
