package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/keystore"
)

func (s *store) WriteUsage(ctx context.Context, b *keystore.UsageBatch) (applied bool, err error) {
	if err := s.init.Ensure(ctx); err != nil {
		return false, err
	}
	rows := b.MergedRows()
	usedIDs, usedAt := b.SortedLastUsed()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("writing usage: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "INSERT INTO keygate_usage_batches (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
		b.ID[:], time.Now().UnixMicro())
	if err != nil {
		return false, fmt.Errorf("writing usage: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	if len(rows) > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO keygate_usage
    (key_id, minute, owner, status_1xx, status_2xx, status_3xx, status_4xx, status_5xx, bytes_in, bytes_out, latency_us)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key_id, minute) DO UPDATE SET
    owner = excluded.owner,
    status_1xx = status_1xx + excluded.status_1xx,
    status_2xx = status_2xx + excluded.status_2xx,
    status_3xx = status_3xx + excluded.status_3xx,
    status_4xx = status_4xx + excluded.status_4xx,
    status_5xx = status_5xx + excluded.status_5xx,
    bytes_in = bytes_in + excluded.bytes_in,
    bytes_out = bytes_out + excluded.bytes_out,
    latency_us = latency_us + excluded.latency_us`)
		if err != nil {
			return false, fmt.Errorf("writing usage: %w", err)
		}
		defer stmt.Close()
		for _, r := range rows {
			if _, err := stmt.ExecContext(ctx, r.KeyID, r.Minute.Unix(), r.Owner, r.Status[0], r.Status[1], r.Status[2], r.Status[3], r.Status[4],
				r.BytesIn, r.BytesOut, r.LatencyMicros); err != nil {
				return false, fmt.Errorf("writing usage: %w", err)
			}
		}
	}
	for i, id := range usedIDs {
		if _, err := tx.ExecContext(ctx, "INSERT INTO keygate_last_used (key_id, at) VALUES (?, ?) ON CONFLICT (key_id) DO UPDATE SET at = max(at, excluded.at)",
			id, usedAt[i].UnixMicro()); err != nil {
			return false, fmt.Errorf("writing usage: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("writing usage: %w", err)
	}
	return true, nil
}

func (s *store) Usage(ctx context.Context, q keystore.UsageQuery) ([]keystore.UsageBucket, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if err := s.init.Ensure(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT (minute / ?1) * ?1 AS b,
    sum(status_1xx), sum(status_2xx), sum(status_3xx), sum(status_4xx), sum(status_5xx),
    sum(bytes_in), sum(bytes_out), sum(latency_us)
FROM keygate_usage
WHERE (?2 = '' OR key_id = ?2) AND (?3 = '' OR owner = ?3) AND minute >= ?4
GROUP BY b ORDER BY b`, q.BucketSeconds(), q.KeyID, q.Owner, q.Since.Unix())
	if err != nil {
		return nil, fmt.Errorf("reading usage: %w", err)
	}
	defer rows.Close()
	buckets, err := keystore.AppendRows(nil, rows, scanBucket)
	if err != nil {
		return nil, fmt.Errorf("reading usage: %w", err)
	}
	return buckets, nil
}

// scanBucket reads a bucket whose start is in Unix seconds.
func scanBucket(row keystore.Scanner) (keystore.UsageBucket, error) {
	var b keystore.UsageBucket
	var start int64
	err := row.Scan(&start, &b.Status[0], &b.Status[1], &b.Status[2], &b.Status[3], &b.Status[4],
		&b.BytesIn, &b.BytesOut, &b.LatencyMicros)
	b.Start = time.Unix(start, 0).UTC()
	return b, err
}

func (s *store) LastUsed(ctx context.Context, id string) (time.Time, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return time.Time{}, err
	}
	var at int64
	err := s.db.QueryRowContext(ctx, "SELECT at FROM keygate_last_used WHERE key_id = ?", id).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading when key %s was last used: %w", id, err)
	}
	return time.UnixMicro(at).UTC(), nil
}

func (s *store) PruneUsage(ctx context.Context, usageBefore, batchesBefore time.Time) (int64, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return 0, err
	}
	res, err := s.db.ExecContext(ctx, "DELETE FROM keygate_usage WHERE minute < ?", usageBefore.Unix())
	if err != nil {
		return 0, fmt.Errorf("pruning usage: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := s.db.ExecContext(ctx, "DELETE FROM keygate_usage_batches WHERE at < ?", batchesBefore.UnixMicro()); err != nil {
		return n, fmt.Errorf("pruning usage batches: %w", err)
	}
	return n, nil
}
