package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Change log timing. Variables so that tests can shorten them.
var (
	// pollInterval is how often the store polls its change log.
	pollInterval = 250 * time.Millisecond
	// changeRetention is how long the change log keeps entries.
	changeRetention = time.Hour
)

// Watch delivers key changes to h until ctx ends by polling the change log
// that triggers fill (migration 0002), so that changes made by another
// process, such as the CLI, are seen within the poll interval.
func (s *store) Watch(ctx context.Context, h keystore.ChangeHandler) error {
	return keystore.WatchLoop(ctx, h, s.pollSession)
}

func (s *store) pollSession(ctx context.Context, h keystore.ChangeHandler) error {
	if err := s.Ready(ctx); err != nil {
		return err
	}
	var last int64
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM keygate_key_changes").Scan(&last); err != nil {
		return fmt.Errorf("reading key change log: %w", err)
	}
	h.Resync()
	h.Healthy(true, nil)
	ticker := time.NewTicker(pollInterval)
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
func (s *store) pollChanges(ctx context.Context, h keystore.ChangeHandler, last int64) (int64, error) {
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
		if len(digest) == keystore.DigestLen {
			h.KeyChanged(keystore.Digest(digest))
		} else {
			h.MalformedChange()
		}
	}
	if err := rows.Err(); err != nil {
		return last, fmt.Errorf("reading key change log: %w", err)
	}
	return last, nil
}
