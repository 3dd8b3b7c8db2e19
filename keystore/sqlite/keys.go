package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/keystore"
)

// SQLite keeps times as Unix microseconds, and scopes and metadata as
// JSON text.

func scanKey(row keystore.Scanner) (*keystore.Key, error) {
	var (
		k                keystore.Key
		digest           []byte
		scopes, metadata string
		created          int64
		expires, revoked sql.NullInt64
	)
	if err := row.Scan(&k.ID, &digest, &k.Name, &k.Owner, &scopes, &metadata, &k.Hint, &created, &expires, &revoked); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, keystore.ErrNotFound
		}
		return nil, err
	}
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return nil, fmt.Errorf("key %s has corrupt scopes: %w", k.ID, err)
	}
	if err := json.Unmarshal([]byte(metadata), &k.Metadata); err != nil {
		return nil, fmt.Errorf("key %s has corrupt metadata: %w", k.ID, err)
	}
	k.CreatedAt = time.UnixMicro(created)
	if expires.Valid {
		k.ExpiresAt = time.UnixMicro(expires.Int64)
	}
	if revoked.Valid {
		k.RevokedAt = time.UnixMicro(revoked.Int64)
	}
	return keystore.ScannedKey(&k, digest)
}

func micros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func (s *store) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return nil, err
	}
	k, err := scanKey(s.db.QueryRowContext(ctx, "SELECT "+keystore.KeyColumns+" FROM keygate_keys WHERE digest = ?", d[:]))
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("looking up key: %w", err)
	}
	return k, err
}

func (s *store) List(ctx context.Context, f keystore.ListFilter) ([]*keystore.Key, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return nil, err
	}
	q := "SELECT " + keystore.KeyColumns + " FROM keygate_keys WHERE (?1 = '' OR owner = ?1)"
	args := []any{f.Owner}
	if !f.IncludeInactive {
		q += " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)"
		args = append(args, f.At().UnixMicro())
	}
	q += " ORDER BY created_at, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
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
	return get(ctx, s.db, id)
}

func insert(ctx context.Context, q querier, k *keystore.Key) error {
	scopeList, metadataMap := keystore.KeyCollections(k)
	scopes, err := json.Marshal(scopeList)
	if err != nil {
		return err
	}
	metadata, err := json.Marshal(metadataMap)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, "INSERT INTO keygate_keys ("+keystore.KeyColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		k.ID, k.Digest[:], k.Name, k.Owner, string(scopes), string(metadata), k.Hint,
		k.CreatedAt.UnixMicro(), micros(k.ExpiresAt), micros(k.RevokedAt))
	var sqlErr *sqlite.Error
	if errors.As(err, &sqlErr) && (sqlErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || sqlErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return keystore.ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("inserting key %s: %w", k.ID, err)
	}
	return nil
}

func get(ctx context.Context, q querier, id string) (*keystore.Key, error) {
	k, err := scanKey(q.QueryRowContext(ctx, "SELECT "+keystore.KeyColumns+" FROM keygate_keys WHERE id = ?", id))
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("reading key %s: %w", id, err)
	}
	return k, err
}

func revoke(ctx context.Context, q querier, id string, at time.Time) (*keystore.Key, bool, error) {
	k, err := scanKey(q.QueryRowContext(ctx,
		"UPDATE keygate_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING "+keystore.KeyColumns, at.UnixMicro(), id))
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

// Change runs f in one transaction. _txlock=immediate takes SQLite's
// write lock at BEGIN: transactions of every process run one after the
// other, which is what keeps the audit chain one chain.
func (s *store) Change(ctx context.Context, f func(keystore.Tx) error) error {
	if err := s.init.Ensure(ctx); err != nil {
		return err
	}
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting a change: %w", err)
	}
	defer t.Rollback()
	if err := f(tx{t}); err != nil {
		return err
	}
	return t.Commit()
}

// tx is the keystore.Tx of a Change.
type tx struct{ tx *sql.Tx }

func (t tx) Get(ctx context.Context, id string) (*keystore.Key, error) { return get(ctx, t.tx, id) }
func (t tx) Insert(ctx context.Context, k *keystore.Key) error         { return insert(ctx, t.tx, k) }
func (t tx) Revoke(ctx context.Context, id string, at time.Time) (*keystore.Key, bool, error) {
	return revoke(ctx, t.tx, id, at)
}
