package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
)

// List returns the keys f selects.
func (s *Store) List(ctx context.Context, f keystore.ListFilter) ([]*keystore.Key, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	q := "SELECT " + keystore.KeyColumns + " FROM keygate_keys WHERE ($1 = '' OR owner = $1)"
	args := []any{f.Owner}
	if !f.IncludeInactive {
		q += " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
		args = append(args, s.d.Time.Value(f.At()))
	}
	q += " ORDER BY created_at, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	defer rows.Close()
	keys, err := keystore.AppendRows(nil, rows, s.d.ScanKey)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	return keys, nil
}

// Get returns the key with id.
func (s *Store) Get(ctx context.Context, id string) (*keystore.Key, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	return s.get(ctx, s.db, id)
}

func (s *Store) get(ctx context.Context, q Querier, id string) (*keystore.Key, error) {
	k, err := s.d.ScanKey(q.QueryRow(ctx, "SELECT "+keystore.KeyColumns+" FROM keygate_keys WHERE id = $1", id))
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("reading key %s: %w", id, err)
	}
	return k, err
}

func (s *Store) insert(ctx context.Context, q Querier, k *keystore.Key) error {
	scopes, metadata, err := s.d.KeyCollections(keystore.KeyCollections(k))
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, "INSERT INTO keygate_keys ("+keystore.KeyColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
		k.ID, k.Digest[:], k.Name, k.Owner, scopes, metadata, k.Hint,
		s.d.Time.Value(k.CreatedAt), s.d.Time.null(k.ExpiresAt), s.d.Time.null(k.RevokedAt), keystore.LimitsText(k.Limits))
	if err != nil && s.d.IsDuplicate(err) {
		return keystore.ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("inserting key %s: %w", k.ID, err)
	}
	return nil
}

func (s *Store) revoke(ctx context.Context, q Querier, id string, at time.Time) (*keystore.Key, bool, error) {
	k, err := s.d.ScanKey(q.QueryRow(ctx,
		"UPDATE keygate_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING "+keystore.KeyColumns, id, s.d.Time.Value(at)))
	if err == nil {
		return k, true, nil
	}
	if !errors.Is(err, keystore.ErrNotFound) {
		return nil, false, fmt.Errorf("revoking key %s: %w", id, err)
	}
	// Either there is no such key or it was revoked before.
	k, err = s.get(ctx, q, id)
	return k, false, err
}

// null is Value, or NULL for the zero time.
func (t Times) null(v time.Time) any {
	if v.IsZero() {
		return nil
	}
	return t.Value(v)
}

// Change runs f in one transaction.
func (s *Store) Change(ctx context.Context, f func(keystore.Tx) error) error {
	if err := s.Ready(ctx); err != nil {
		return err
	}
	t, err := s.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("starting a change: %w", err)
	}
	return commitIf(ctx, t, func(q Querier) error { return f(tx{s, q}) })
}

// tx is the keystore.Tx of a Change.
type tx struct {
	s *Store
	q Querier
}

func (t tx) Get(ctx context.Context, id string) (*keystore.Key, error) { return t.s.get(ctx, t.q, id) }
func (t tx) Insert(ctx context.Context, k *keystore.Key) error         { return t.s.insert(ctx, t.q, k) }
func (t tx) Revoke(ctx context.Context, id string, at time.Time) (*keystore.Key, bool, error) {
	return t.s.revoke(ctx, t.q, id, at)
}
func (t tx) Append(ctx context.Context, e *audit.Event) error { return t.s.append(ctx, t.q, e) }
