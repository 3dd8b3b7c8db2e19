package keystore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Readiness runs a store's one-time setup (migrations, pepper check) on
// first use and again after a failure, without piling up attempts: while
// one attempt runs, others wait for it (or for their own deadline), and
// after a failure a new attempt is made at most once per RetryEvery; in
// between, callers get the last error at once.
type Readiness struct {
	setup func(context.Context) error

	ready   atomic.Bool
	lock    chan struct{} // a mutex that callers can stop waiting for
	lastErr error
	lastTry time.Time
}

// RetryEvery is how often Readiness tries a failed setup again at the most.
const RetryEvery = 500 * time.Millisecond

// NewReadiness returns a Readiness that runs setup.
func NewReadiness(setup func(context.Context) error) *Readiness {
	return &Readiness{setup: setup, lock: make(chan struct{}, 1)}
}

// Ensure returns nil once setup has succeeded; until then it runs setup
// (or waits for the attempt under way) and returns its error.
func (r *Readiness) Ensure(ctx context.Context) error {
	if r.ready.Load() {
		return nil
	}
	select {
	case r.lock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the key store to become ready: %w", ctx.Err())
	}
	defer func() { <-r.lock }()
	if r.ready.Load() {
		return nil
	}
	if r.lastErr != nil && time.Since(r.lastTry) < RetryEvery {
		return r.lastErr
	}
	r.lastTry = time.Now()
	r.lastErr = r.setup(ctx)
	if r.lastErr == nil {
		r.ready.Store(true)
	}
	return r.lastErr
}
