package keystore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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

// Watch timing. Variables so that tests can shorten them.
var (
	// listenPing is how long the PostgreSQL listener waits for a
	// notification before it checks that its connection is alive: a
	// connection that died without a word (a network partition) would
	// otherwise wait forever.
	listenPing = 5 * time.Second
	// watchBackoffMax caps the wait between reconnection attempts.
	watchBackoffMax = 5 * time.Second
	// sqlitePollInterval is how often the SQLite store polls its change log.
	sqlitePollInterval = 250 * time.Millisecond
	// changeRetention is how long the SQLite change log keeps entries.
	changeRetention = time.Hour
)

// notifyChannel is the PostgreSQL channel the key trigger notifies on.
const notifyChannel = "keygate_keys"

// watchLoop runs session until ctx ends, reporting each failure as
// unhealthy and retrying with exponential backoff. The backoff grows only
// over consecutive failures to establish a watch: a session that got as
// far as delivering changes starts the next attempt from the minimum, so
// a watch that is cut again and again (an administrator terminating
// sessions) still comes back at once each time.
func watchLoop(ctx context.Context, h ChangeHandler, session func(context.Context, ChangeHandler) error) error {
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

// Watch delivers key changes to h until ctx ends: LISTEN/NOTIFY on a
// connection of its own, never returned to the pool. After every
// (re)connection it asks h to Resync, because notifications sent while
// nobody listened are lost.
func (s *pgStore) Watch(ctx context.Context, h ChangeHandler) error {
	return watchLoop(ctx, h, s.listenSession)
}

func (s *pgStore) listenSession(ctx context.Context, h ChangeHandler) error {
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, s.pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return fmt.Errorf("connecting key change listener: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return fmt.Errorf("listening for key changes: %w", err)
	}
	// Listening now; anything that changed before is covered by a resync.
	h.Resync()
	h.Healthy(true, nil)
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			if b, err := hex.DecodeString(n.Payload); err == nil && len(b) == DigestLen {
				h.KeyChanged(Digest(b))
			} else {
				h.MalformedChange()
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("key change listener connection lost: %w", err)
			}
		default:
			return fmt.Errorf("key change listener connection lost: %w", err)
		}
	}
}

// Watch delivers key changes to h until ctx ends by polling the change log
// that triggers fill (migration 0002), so that changes made by another
// process, such as the CLI, are seen within the poll interval.
func (s *sqliteStore) Watch(ctx context.Context, h ChangeHandler) error {
	return watchLoop(ctx, h, s.pollSession)
}

func (s *sqliteStore) pollSession(ctx context.Context, h ChangeHandler) error {
	if err := s.init.ensure(ctx); err != nil {
		return err
	}
	var last int64
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM keygate_key_changes").Scan(&last); err != nil {
		return fmt.Errorf("reading key change log: %w", err)
	}
	h.Resync()
	h.Healthy(true, nil)
	ticker := time.NewTicker(sqlitePollInterval)
	defer ticker.Stop()
	lastPrune := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
		var err error
		if last, err = s.pollChanges(ctx, h, last); err != nil {
			return err
		}
		if time.Since(lastPrune) > changeRetention/10 {
			lastPrune = time.Now()
			if _, err := s.db.ExecContext(ctx, "DELETE FROM keygate_key_changes WHERE changed_at < ?",
				time.Now().Add(-changeRetention).UnixMicro()); err != nil {
				return fmt.Errorf("pruning key change log: %w", err)
			}
		}
	}
}

// pollChanges delivers the changes after seq last and returns the new last.
func (s *sqliteStore) pollChanges(ctx context.Context, h ChangeHandler, last int64) (int64, error) {
	var oldest int64
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(min(seq), 0) FROM keygate_key_changes").Scan(&oldest); err != nil {
		return last, fmt.Errorf("reading key change log: %w", err)
	}
	if oldest > last+1 {
		// Entries we never saw were pruned (this process was stalled for
		// longer than the retention): we cannot know what changed.
		h.Resync()
	}
	rows, err := s.db.QueryContext(ctx, "SELECT seq, digest FROM keygate_key_changes WHERE seq > ? ORDER BY seq", last)
	if err != nil {
		return last, fmt.Errorf("reading key change log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var digest []byte
		if err := rows.Scan(&last, &digest); err != nil {
			return last, fmt.Errorf("reading key change log: %w", err)
		}
		if len(digest) == DigestLen {
			h.KeyChanged(Digest(digest))
		} else {
			h.MalformedChange()
		}
	}
	if err := rows.Err(); err != nil {
		return last, fmt.Errorf("reading key change log: %w", err)
	}
	return last, nil
}
