package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/audit"
)

// Append needs no lock of its own: the transaction holds SQLite's write
// lock from BEGIN (see Change), so the head read here is still the head
// when the event is inserted, in every process.
func (t tx) Append(ctx context.Context, e *audit.Event) error {
	seq, prev, err := head(ctx, t.tx)
	if err != nil {
		return err
	}
	audit.Seal(e, seq, prev)
	if _, err := t.tx.ExecContext(ctx, "INSERT INTO keygate_audit (seq, at, actor, action, key_id, owner, before, after, prev, hash) "+
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		e.Seq, e.Time.UnixMicro(), e.Actor, e.Action, e.KeyID, e.Owner, e.Before, e.After, e.Prev, e.Hash); err != nil {
		return fmt.Errorf("appending an audit event: %w", err)
	}
	return nil
}

func head(ctx context.Context, q querier) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := q.QueryRowContext(ctx, "SELECT seq, hash FROM keygate_audit ORDER BY seq DESC LIMIT 1").Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
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
	seq, hash, err := head(ctx, s.db)
	return audit.Head{Seq: seq, Hash: hash}, err
}

func (s *store) Events(ctx context.Context, f audit.Filter, each func(*audit.Event) error) error {
	if err := s.init.Ensure(ctx); err != nil {
		return err
	}
	var since any
	if !f.Since.IsZero() {
		since = f.Since.UnixMicro()
	}
	rows, err := s.db.QueryContext(ctx, "SELECT seq, at, actor, action, key_id, owner, before, after, prev, hash FROM keygate_audit "+
		"WHERE seq > ?1 AND (?2 = '' OR key_id = ?2) AND (?3 = '' OR owner = ?3) AND (?4 IS NULL OR at >= ?4) ORDER BY seq",
		f.AfterSeq, f.KeyID, f.Owner, since)
	if err != nil {
		return fmt.Errorf("reading audit events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e audit.Event
		var at int64
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.KeyID, &e.Owner, &e.Before, &e.After, &e.Prev, &e.Hash); err != nil {
			return fmt.Errorf("reading audit events: %w", err)
		}
		e.Time = time.UnixMicro(at).UTC()
		if err := each(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
