package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

func (s *store) WriteUsage(ctx context.Context, b *keystore.UsageBatch) (applied bool, err error) {
	if err := s.init.Ensure(ctx); err != nil {
		return false, err
	}
	rows := b.MergedRows()
	n := len(rows)
	var (
		ids, owners                    = make([]string, n), make([]string, n)
		minutes                        = make([]time.Time, n)
		c1, c2, c3, c4, c5, in, out, l = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	)
	for i, r := range rows {
		ids[i], owners[i], minutes[i] = r.KeyID, r.Owner, r.Minute
		c1[i], c2[i], c3[i], c4[i], c5[i] = r.Status[0], r.Status[1], r.Status[2], r.Status[3], r.Status[4]
		in[i], out[i], l[i] = r.BytesIn, r.BytesOut, r.LatencyMicros
	}
	usedIDs, usedAt := b.SortedLastUsed()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		applied = false // a retried transaction starts over
		tag, err := tx.Exec(ctx, "INSERT INTO keygate_usage_batches (id, at) VALUES ($1, now()) ON CONFLICT (id) DO NOTHING", b.ID[:])
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		applied = true
		if n > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO keygate_usage AS u
    (key_id, minute, owner, status_1xx, status_2xx, status_3xx, status_4xx, status_5xx, bytes_in, bytes_out, latency_us)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[])
ON CONFLICT (key_id, minute) DO UPDATE SET
    owner = EXCLUDED.owner,
    status_1xx = u.status_1xx + EXCLUDED.status_1xx,
    status_2xx = u.status_2xx + EXCLUDED.status_2xx,
    status_3xx = u.status_3xx + EXCLUDED.status_3xx,
    status_4xx = u.status_4xx + EXCLUDED.status_4xx,
    status_5xx = u.status_5xx + EXCLUDED.status_5xx,
    bytes_in = u.bytes_in + EXCLUDED.bytes_in,
    bytes_out = u.bytes_out + EXCLUDED.bytes_out,
    latency_us = u.latency_us + EXCLUDED.latency_us`,
				ids, minutes, owners, c1, c2, c3, c4, c5, in, out, l); err != nil {
				return err
			}
		}
		if len(usedIDs) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO keygate_last_used AS l (key_id, at)
SELECT * FROM unnest($1::text[], $2::timestamptz[])
ON CONFLICT (key_id) DO UPDATE SET at = GREATEST(l.at, EXCLUDED.at)`, usedIDs, usedAt); err != nil {
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

func (s *store) Usage(ctx context.Context, q keystore.UsageQuery) ([]keystore.UsageBucket, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if err := s.init.Ensure(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT date_trunc($1, minute, 'UTC') AS b,
    sum(status_1xx)::bigint, sum(status_2xx)::bigint, sum(status_3xx)::bigint, sum(status_4xx)::bigint, sum(status_5xx)::bigint,
    sum(bytes_in)::bigint, sum(bytes_out)::bigint, sum(latency_us)::bigint
FROM keygate_usage
WHERE ($2 = '' OR key_id = $2) AND ($3 = '' OR owner = $3) AND minute >= $4
GROUP BY b ORDER BY b`, q.By, q.KeyID, q.Owner, q.Since.UTC())
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

func scanBucket(row keystore.Scanner) (keystore.UsageBucket, error) {
	var b keystore.UsageBucket
	err := row.Scan(&b.Start, &b.Status[0], &b.Status[1], &b.Status[2], &b.Status[3], &b.Status[4],
		&b.BytesIn, &b.BytesOut, &b.LatencyMicros)
	b.Start = b.Start.UTC()
	return b, err
}

func (s *store) LastUsed(ctx context.Context, id string) (time.Time, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return time.Time{}, err
	}
	var at time.Time
	err := s.pool.QueryRow(ctx, "SELECT at FROM keygate_last_used WHERE key_id = $1", id).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading when key %s was last used: %w", id, err)
	}
	return at.UTC(), nil
}

func (s *store) PruneUsage(ctx context.Context, usageBefore, batchesBefore time.Time) (int64, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, "DELETE FROM keygate_usage WHERE minute < $1", usageBefore.UTC())
	if err != nil {
		return 0, fmt.Errorf("pruning usage: %w", err)
	}
	if _, err := s.pool.Exec(ctx, "DELETE FROM keygate_usage_batches WHERE at < $1", batchesBefore.UTC()); err != nil {
		return tag.RowsAffected(), fmt.Errorf("pruning usage batches: %w", err)
	}
	return tag.RowsAffected(), nil
}
