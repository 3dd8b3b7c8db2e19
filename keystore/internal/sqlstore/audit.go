package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/keygate/keygate/audit"
)

// append holds the chain's head until the transaction ends, so the head
// read here is still the head when the event is inserted, in every
// process: PostgreSQL's LockAudit conflicts with itself (not with
// readers); SQLite's transactions hold the write lock from Begin.
func (s *Store) append(ctx context.Context, q Querier, e *audit.Event) error {
	if s.d.LockAudit != "" {
		if _, err := q.Exec(ctx, s.d.LockAudit); err != nil {
			return fmt.Errorf("appending an audit event: %w", err)
		}
	}
	seq, prev, err := head(ctx, q)
	if err != nil {
		return err
	}
	audit.Seal(e, seq, prev)
	if _, err := q.Exec(ctx, "INSERT INTO keygate_audit (seq, at, actor, action, key_id, owner, before, after, prev, hash) "+
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
		e.Seq, s.d.Time.Value(e.Time), e.Actor, e.Action, e.KeyID, e.Owner, e.Before, e.After, e.Prev, e.Hash); err != nil {
		return fmt.Errorf("appending an audit event: %w", err)
	}
	return nil
}

func head(ctx context.Context, q Querier) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := q.QueryRow(ctx, "SELECT seq, hash FROM keygate_audit ORDER BY seq DESC LIMIT 1").Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading the audit chain's head: %w", err)
	}
	return seq, hash, nil
}

// Head returns the audit chain's last sequence number and hash.
func (s *Store) Head(ctx context.Context) (audit.Head, error) {
	if err := s.Ready(ctx); err != nil {
		return audit.Head{}, err
	}
	seq, hash, err := head(ctx, s.db)
	return audit.Head{Seq: seq, Hash: hash}, err
}

// Events calls each for the audit events f selects, in chain order.
func (s *Store) Events(ctx context.Context, f audit.Filter, each func(*audit.Event) error) error {
	if err := s.Ready(ctx); err != nil {
		return err
	}
	// at >= $4 comes first so that PostgreSQL learns $4's type from it.
	rows, err := s.db.Query(ctx, "SELECT seq, at, actor, action, key_id, owner, before, after, prev, hash FROM keygate_audit "+
		"WHERE seq > $1 AND ($2 = '' OR key_id = $2) AND ($3 = '' OR owner = $3) AND (at >= $4 OR $4 IS NULL) ORDER BY seq",
		f.AfterSeq, f.KeyID, f.Owner, s.d.Time.null(f.Since))
	if err != nil {
		return fmt.Errorf("reading audit events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e audit.Event
		if err := rows.Scan(&e.Seq, s.d.Time.Dest(&e.Time), &e.Actor, &e.Action, &e.KeyID, &e.Owner, &e.Before, &e.After, &e.Prev, &e.Hash); err != nil {
			return fmt.Errorf("reading audit events: %w", err)
		}
		e.Time = e.Time.UTC()
		if err := each(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
