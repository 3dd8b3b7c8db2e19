package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/keystore"
)

func scanKey(row keystore.Scanner) (*keystore.Key, error) {
	var (
		k       keystore.Key
		digest  []byte
		exp     *time.Time
		revoked *time.Time
	)
	if err := row.Scan(&k.ID, &digest, &k.Name, &k.Owner, &k.Scopes, &k.Metadata, &k.Hint, &k.CreatedAt, &exp, &revoked); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, keystore.ErrNotFound
		}
		return nil, err
	}
	if exp != nil {
		k.ExpiresAt = *exp
	}
	if revoked != nil {
		k.RevokedAt = *revoked
	}
	return keystore.ScannedKey(&k, digest)
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *store) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return nil, err
	}
	const q = "SELECT " + keystore.KeyColumns + " FROM keygate_keys WHERE digest = $1"
	k, err := scanKey(s.pool.QueryRow(ctx, q, d[:]))
	// A pooled connection the server ended (a restart, an administrator's
	// pg_terminate_backend) fails at once. One such failure is retried on
	// another connection; a second one means the server ended many
	// sessions, and the pool (which pings only connections idle for a
	// second) may hold more of them, so it is emptied before a last try.
	// The query only reads; repeating it is safe.
	if err != nil && retryable(ctx, err) {
		k, err = scanKey(s.pool.QueryRow(ctx, q, d[:]))
		if err != nil && retryable(ctx, err) {
			s.pool.Reset()
			k, err = scanKey(s.pool.QueryRow(ctx, q, d[:]))
		}
	}
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("looking up key: %w", err)
	}
	return k, err
}

func (s *store) List(ctx context.Context, f keystore.ListFilter) ([]*keystore.Key, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return nil, err
	}
	q := "SELECT " + keystore.KeyColumns + " FROM keygate_keys WHERE ($1 = '' OR owner = $1)"
	args := []any{f.Owner}
	if !f.IncludeInactive {
		q += " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
		args = append(args, f.At())
	}
	q += " ORDER BY created_at, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	defer rows.Close()
	keys, err := keystore.AppendRows(nil, rows, scanKey)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	return keys, nil
}

func (s *store) Get(ctx context.Context, id string) (*keystore.Key, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return nil, err
	}
	return get(ctx, s.pool, id)
}

func insert(ctx context.Context, q querier, k *keystore.Key) error {
	scopes, metadata := keystore.KeyCollections(k)
	_, err := q.Exec(ctx, "INSERT INTO keygate_keys ("+keystore.KeyColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
		k.ID, k.Digest[:], k.Name, k.Owner, scopes, metadata, k.Hint,
		k.CreatedAt, nullTime(k.ExpiresAt), nullTime(k.RevokedAt))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return keystore.ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("inserting key %s: %w", k.ID, err)
	}
	return nil
}

func get(ctx context.Context, q querier, id string) (*keystore.Key, error) {
	k, err := scanKey(q.QueryRow(ctx, "SELECT "+keystore.KeyColumns+" FROM keygate_keys WHERE id = $1", id))
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("reading key %s: %w", id, err)
	}
	return k, err
}

func revoke(ctx context.Context, q querier, id string, at time.Time) (*keystore.Key, bool, error) {
	k, err := scanKey(q.QueryRow(ctx,
		"UPDATE keygate_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING "+keystore.KeyColumns, id, at.UTC()))
	if err == nil {
		return k, true, nil
	}
	if !errors.Is(err, keystore.ErrNotFound) {
		return nil, false, fmt.Errorf("revoking key %s: %w", id, err)
	}
	// Either there is no such key or it was revoked before.
	k, err = get(ctx, q, id)
	return k, false, err
}

// Change runs f in one transaction.
func (s *store) Change(ctx context.Context, f func(keystore.Tx) error) error {
	if err := s.init.Ensure(ctx); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(t pgx.Tx) error { return f(tx{t}) })
}

// tx is the keystore.Tx of a Change.
type tx struct{ tx pgx.Tx }

func (t tx) Get(ctx context.Context, id string) (*keystore.Key, error) { return get(ctx, t.tx, id) }
func (t tx) Insert(ctx context.Context, k *keystore.Key) error         { return insert(ctx, t.tx, k) }
func (t tx) Revoke(ctx context.Context, id string, at time.Time) (*keystore.Key, bool, error) {
	return revoke(ctx, t.tx, id, at)
}
