package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/audit"
)

// Append serialises appenders on a lock of the audit table that only
// writers take (SHARE ROW EXCLUSIVE conflicts with itself, not with
// readers), held until the transaction ends: the head read here is still
// the head when the event is inserted, in every process.
func (t tx) Append(ctx context.Context, e *audit.Event) error {
	if _, err := t.tx.Exec(ctx, "LOCK TABLE keygate_audit IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("appending an audit event: %w", err)
	}
	seq, prev, err := head(ctx, t.tx)
	if err != nil {
		return err
	}
	audit.Seal(e, seq, prev)
	if _, err := t.tx.Exec(ctx, "INSERT INTO keygate_audit (seq, at, actor, action, key_id, owner, before, after, prev, hash) "+
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
		e.Seq, e.Time, e.Actor, e.Action, e.KeyID, e.Owner, e.Before, e.After, e.Prev, e.Hash); err != nil {
		return fmt.Errorf("appending an audit event: %w", err)
	}
	return nil
}

func head(ctx context.Context, q querier) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := q.QueryRow(ctx, "SELECT seq, hash FROM keygate_audit ORDER BY seq DESC LIMIT 1").Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading the audit chain's head: %w", err)
	}
	return seq, hash, nil
}

func (s *store) Head(ctx context.Context) (audit.Head, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return audit.Head{}, err
	}
	seq, hash, err := head(ctx, s.pool)
	return audit.Head{Seq: seq, Hash: hash}, err
}

func (s *store) Events(ctx context.Context, f audit.Filter, each func(*audit.Event) error) error {
	if err := s.init.Ensure(ctx); err != nil {
		return err
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	rows, err := s.pool.Query(ctx, "SELECT seq, at, actor, action, key_id, owner, before, after, prev, hash FROM keygate_audit "+
		"WHERE seq > $1 AND ($2 = '' OR key_id = $2) AND ($3 = '' OR owner = $3) AND ($4::timestamptz IS NULL OR at >= $4) ORDER BY seq",
		f.AfterSeq, f.KeyID, f.Owner, since)
	if err != nil {
		return fmt.Errorf("reading audit events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e audit.Event
		if err := rows.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &e.KeyID, &e.Owner, &e.Before, &e.After, &e.Prev, &e.Hash); err != nil {
			return fmt.Errorf("reading audit events: %w", err)
		}
		e.Time = e.Time.UTC()
		if err := each(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
