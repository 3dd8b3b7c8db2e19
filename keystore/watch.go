package keystore

import (
	"context"
	"time"
)

// ChangeHandler receives what Store.Watch learns about key changes.
// Calls come from one goroutine, in order.
type ChangeHandler interface {
	// KeyChanged: the key with this digest was created, changed or
	// deleted; a cached copy must be dropped.
	KeyChanged(d Digest)
	// Resync: changes may have been missed (the watch was just
	// established or re-established); every cached key must be dropped.
	Resync()
	// MalformedChange: a notification or change log entry that is not a
	// key digest arrived and was ignored. Keygate's triggers never make
	// one: someone else wrote it (any role that can connect may NOTIFY
	// on the channel). It is not a reason to drop cached keys, or anyone
	// could make every gateway reload its whole cache at will.
	MalformedChange()
	// Healthy reports whether changes are being delivered. While they are
	// not (err says why), caches must not trust their entries for long.
	Healthy(ok bool, err error)
}

// watchBackoffMax caps the wait between reconnection attempts.
const watchBackoffMax = 5 * time.Second

// WatchLoop runs session until ctx ends, reporting each failure as
// unhealthy and retrying with exponential backoff. The backoff grows only
// over consecutive failures to establish a watch: a session that got as
// far as delivering changes starts the next attempt from the minimum, so
// a watch that is cut again and again (an administrator terminating
// sessions) still comes back at once each time. Backends implement Watch
// with it; a session reports Resync and Healthy(true, nil) once its watch
// is established.
func WatchLoop(ctx context.Context, h ChangeHandler, session func(context.Context, ChangeHandler) error) error {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for {
		tracked := &healthTracker{ChangeHandler: h}
		err := session(ctx, tracked)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.Healthy(false, err)
		if tracked.wasHealthy {
			backoff = minBackoff
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, watchBackoffMax)
	}
}

// healthTracker notes whether a session reported itself healthy.
type healthTracker struct {
	ChangeHandler
	wasHealthy bool
}

func (t *healthTracker) Healthy(ok bool, err error) {
	t.wasHealthy = t.wasHealthy || ok
	t.ChangeHandler.Healthy(ok, err)
}
