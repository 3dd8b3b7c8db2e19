package cache

import (
	"context"
	"sync"

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

// Resync implements keystore.ChangeHandler.
func (inv *Invalidator) Resync() {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for v := range inv.verifiers {
		v.Purge()
	}
}

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
