package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/keystore"
)

// WriteUsage adds a batch's counts and last uses in one transaction,
// unless the batch was written before.
func (s *Store) WriteUsage(ctx context.Context, b *keystore.UsageBatch) (applied bool, err error) {
	if err := s.Ready(ctx); err != nil {
		return false, err
	}
	rows := b.MergedRows()
	usedIDs, usedAt := b.SortedLastUsed()
	err = inTx(ctx, s.db, func(tx Querier) error {
		n, err := tx.Exec(ctx, "INSERT INTO keygate_usage_batches (id, at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
			b.ID[:], s.d.Time.Value(time.Now()))
		if err != nil || n == 0 {
			return err
		}
		applied = true
		if len(rows) > 0 {
			args, err := s.d.UsageArgs(rows)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, s.d.UpsertUsage, args...); err != nil {
				return err
			}
		}
		if len(usedIDs) > 0 {
			args, err := s.d.LastUsedArgs(usedIDs, usedAt)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, s.d.UpsertLastUsed, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("writing usage: %w", err)
	}
	return applied, nil
}

// Usage sums the counts q selects into buckets, oldest first.
func (s *Store) Usage(ctx context.Context, q keystore.UsageQuery) ([]keystore.UsageBucket, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, s.d.UsageBuckets, s.d.BucketSize(q), q.KeyID, q.Owner, s.d.Minute.Value(q.Since))
	if err != nil {
		return nil, fmt.Errorf("reading usage: %w", err)
	}
	defer rows.Close()
	buckets, err := keystore.AppendRows(nil, rows, s.scanBucket)
	if err != nil {
		return nil, fmt.Errorf("reading usage: %w", err)
	}
	return buckets, nil
}

func (s *Store) scanBucket(row keystore.Scanner) (keystore.UsageBucket, error) {
	var b keystore.UsageBucket
	err := row.Scan(s.d.Minute.Dest(&b.Start), &b.Status[0], &b.Status[1], &b.Status[2], &b.Status[3], &b.Status[4],
		&b.BytesIn, &b.BytesOut, &b.LatencyMicros)
	b.Start = b.Start.UTC()
	return b, err
}

// LastUsed returns when the key with id was last used (zero if never).
func (s *Store) LastUsed(ctx context.Context, id string) (time.Time, error) {
	if err := s.Ready(ctx); err != nil {
		return time.Time{}, err
	}
	var at time.Time
	err := s.db.QueryRow(ctx, "SELECT at FROM keygate_last_used WHERE key_id = $1", id).Scan(s.d.Time.Dest(&at))
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading when key %s was last used: %w", id, err)
	}
	return at.UTC(), nil
}

// PruneUsage deletes the counts of minutes before usageBefore and the
// record of batches written before batchesBefore.
func (s *Store) PruneUsage(ctx context.Context, usageBefore, batchesBefore time.Time) (int64, error) {
	if err := s.Ready(ctx); err != nil {
		return 0, err
	}
	n, err := s.db.Exec(ctx, "DELETE FROM keygate_usage WHERE minute < $1", s.d.Minute.Value(usageBefore))
	if err != nil {
		return 0, fmt.Errorf("pruning usage: %w", err)
	}
	if _, err := s.db.Exec(ctx, "DELETE FROM keygate_usage_batches WHERE at < $1", s.d.Time.Value(batchesBefore)); err != nil {
		return n, fmt.Errorf("pruning usage batches: %w", err)
	}
	// Request counters of periods that ended before the usage kept; never
	// those of a key's whole life (period_start 0).
	if !usageBefore.IsZero() {
		if _, err := s.db.Exec(ctx, "DELETE FROM keygate_counters WHERE period_start > 0 AND period_start < $1", usageBefore.Unix()); err != nil {
			return n, fmt.Errorf("pruning request counters: %w", err)
		}
	}
	return n, nil
}
