package sqlstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// AddCounts adds a batch of counter deltas in one transaction, unless the
// batch was written before, and returns each counter's total after it.
func (s *Store) AddCounts(ctx context.Context, b *keystore.CountBatch) ([]int64, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	totals := make([]int64, len(b.Deltas))
	err := inTx(ctx, s.db, func(tx Querier) error {
		n, err := tx.Exec(ctx, "INSERT INTO keygate_usage_batches (id, at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
			b.ID[:], s.d.Time.Value(time.Now()))
		if err != nil {
			return err
		}
		// In one order in every writer, so that two batches cannot wait
		// for each other's rows.
		order := make([]int, len(b.Deltas))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(x, y int) int {
			a, c := b.Deltas[x], b.Deltas[y]
			return cmp.Or(strings.Compare(a.Subject, c.Subject), a.Start.Compare(c.Start))
		})
		for _, i := range order {
			d := b.Deltas[i]
			var row keystore.Scanner
			if n > 0 { // a new batch: add it
				row = tx.QueryRow(ctx, `INSERT INTO keygate_counters (subject, period_start, count) VALUES ($1, $2, $3)
ON CONFLICT (subject, period_start) DO UPDATE SET count = keygate_counters.count + excluded.count
RETURNING count`, d.Subject, d.Start.Unix(), d.N)
			} else { // written before: read what it left
				row = tx.QueryRow(ctx, "SELECT coalesce(sum(count), 0) FROM keygate_counters WHERE subject = $1 AND period_start = $2",
					d.Subject, d.Start.Unix())
			}
			if err := row.Scan(&totals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("writing request counts: %w", err)
	}
	return totals, nil
}

// Count returns a counter's total; zero if it has none.
func (s *Store) Count(ctx context.Context, subject string, start time.Time) (int64, error) {
	if err := s.Ready(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.QueryRow(ctx, "SELECT coalesce(sum(count), 0) FROM keygate_counters WHERE subject = $1 AND period_start = $2",
		subject, start.Unix()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("reading request count: %w", err)
	}
	return n, nil
}
