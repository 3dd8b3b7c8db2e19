package cache

import (
	"context"
	"sync"

	"github.com/keygate/keygate/keystore"
)

// flights runs at most one store lookup per digest at a time and shares
// its answer with every request waiting for it, like singleflight, with
// one difference that matters under a flood: a lookup that every waiter
// has abandoned (the clients went away) is cancelled at once, so that
// neither it nor its goroutine outlives the requests that wanted it.
type flights struct {
	mu    sync.Mutex
	calls map[keystore.Digest]*call
}

// call is one lookup in flight.
type call struct {
	done chan struct{} // closed when key and err are set
	key  *keystore.Key
	err  error

	ctx     context.Context // cancelled when nobody waits any more
	cancel  context.CancelFunc
	waiters int // guarded by flights.mu
}

// join returns the lookup in flight for d, or registers a new one, in
// which case started is true and the caller must run it (finish). Each
// join must be matched by a leave, unless the caller waits for done.
func (f *flights) join(d keystore.Digest) (c *call, started bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c = f.calls[d]; c == nil {
		ctx, cancel := context.WithCancel(context.Background())
		c = &call{done: make(chan struct{}), ctx: ctx, cancel: cancel}
		if f.calls == nil {
			f.calls = map[keystore.Digest]*call{}
		}
		f.calls[d] = c
		started = true
	}
	c.waiters++
	return c, started
}

// leave withdraws one waiter that stopped waiting before the answer came.
// The last one to leave cancels the lookup.
func (f *flights) leave(d keystore.Digest, c *call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c.waiters--
	if c.waiters > 0 {
		return
	}
	if f.calls[d] == c {
		delete(f.calls, d)
	}
	c.cancel()
}

// finish publishes the answer of c to its waiters.
func (f *flights) finish(d keystore.Digest, c *call, k *keystore.Key, err error) {
	f.mu.Lock()
	if f.calls[d] == c {
		delete(f.calls, d)
	}
	c.key, c.err = k, err
	f.mu.Unlock()
	c.cancel()
	close(c.done)
}

// has reports whether a lookup of d is in flight.
func (f *flights) has(d keystore.Digest) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[d] != nil
}

// forget makes the next join for d start a new lookup; one in flight
// still answers the requests already waiting for it.
func (f *flights) forget(d keystore.Digest) {
	f.mu.Lock()
	delete(f.calls, d)
	f.mu.Unlock()
}

// cancelAll cancels every lookup in flight (the verifier is closing).
func (f *flights) cancelAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for d, c := range f.calls {
		c.cancel()
		delete(f.calls, d)
	}
}
