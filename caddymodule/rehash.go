package caddymodule

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
)

// Pepper rotation: a key found with one of the previous peppers is
// re-hashed with the current pepper, in the background, by the store the
// handlers share. The request that proved the key (it carries the key
// itself, which the digest is made of) is not held up; a re-hash that
// fails is tried again at the key's next use.

// rehashes holds the re-hashes of one store in flight.
type rehashes struct {
	inflight sync.Map     // key id -> struct{}
	pending  atomic.Int64 // re-hashes running or waiting for a slot
	slots    chan struct{}
	ctx      context.Context // ends when the store closes
	stop     context.CancelFunc
	wg       sync.WaitGroup
	started  atomic.Bool  // the first re-hash was logged
	lastWarn atomic.Int64 // Unix nanoseconds of the last failure logged
	done     atomic.Uint64
}

// maxRehashes bounds the re-hashes a store runs at once, and
// maxPendingRehashes those waiting for a slot; a key whose re-hash finds
// the queue full is re-hashed at a later use.
const (
	maxRehashes        = 4
	maxPendingRehashes = 4096
)

func newRehashes() *rehashes {
	ctx, stop := context.WithCancel(context.Background())
	return &rehashes{slots: make(chan struct{}, maxRehashes), ctx: ctx, stop: stop}
}

// rehash moves key, found with digest from, to digest to of the pepper
// pepperID, unless its re-hash is in flight or no slot is free.
func (s *sharedStore) rehash(logger *zap.Logger, key *keystore.Key, from, to keystore.Digest, pepperID string, timeout time.Duration) {
	r := s.rehashes
	if _, busy := r.inflight.LoadOrStore(key.ID, struct{}{}); busy {
		return
	}
	if r.pending.Add(1) > maxPendingRehashes {
		r.pending.Add(-1)
		r.inflight.Delete(key.ID)
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { r.pending.Add(-1); r.inflight.Delete(key.ID) }()
		select {
		case r.slots <- struct{}{}:
		case <-r.ctx.Done():
			return
		}
		defer func() { <-r.slots }()
		ctx, cancel := context.WithTimeout(r.ctx, timeout)
		defer cancel()
		moved, err := s.Rehash(ctx, key.ID, from, to, pepperID)
		switch {
		case err != nil:
			now := time.Now().UnixNano()
			if last := r.lastWarn.Load(); now-last > int64(time.Minute) && r.lastWarn.CompareAndSwap(last, now) {
				msg := "could not re-hash a key with the current pepper; the key keeps working with its previous pepper and is tried again at its next use"
				if keystore.PermissionDenied(err) {
					msg += "; this database role may not re-hash keys: grant it the runtime role's privileges (`caddy api-key migrate --print-grants`)"
				}
				logger.Warn(msg, zap.String("key_id", key.ID), zap.String("pepper", pepperID), zap.Error(err))
			}
		case moved:
			n := r.done.Add(1)
			if r.started.CompareAndSwap(false, true) {
				logger.Info("re-hashing keys made with a previous pepper as they are used; `caddy api-key pepper-status` shows how many are left",
					zap.String("pepper", pepperID))
			}
			logger.Debug("key re-hashed with the current pepper", zap.String("key_id", key.ID), zap.String("pepper", pepperID),
				zap.Uint64("rehashed_total", n))
		}
	}()
}

// stopAndWait ends the store's re-hashes (those waiting for a slot give
// up, those running are cancelled) and waits for them: the store is
// about to close.
func (r *rehashes) stopAndWait() {
	r.stop()
	r.wg.Wait()
}
