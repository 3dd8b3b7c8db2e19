package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
)

// List returns the keys f selects.
func (s *Store) List(ctx context.Context, f keystore.ListFilter) ([]*keystore.Key, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	args := []any{f.Owner}
	// arg adds a statement argument and returns its placeholder: each is
	// added only when used, since PostgreSQL cannot type one that is not.
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	q := keystore.KeySelect + " WHERE ($1 = '' OR k.owner = $1)"
	if len(f.Statuses) > 0 {
		now := arg(s.d.Time.Value(f.At()))
		conds := make([]string, len(f.Statuses))
		for i, st := range f.Statuses {
			conds[i] = "(" + statusWhere(st, now) + ")"
		}
		q += " AND (" + strings.Join(conds, " OR ") + ")"
	}
	if f.After != "" {
		// The page starts after the cursor key's place, read first: a
		// cursor deleted since is an error rather than an empty page.
		var created time.Time
		err := s.db.QueryRow(ctx, "SELECT created_at FROM keygate_keys WHERE id = $1", f.After).Scan(s.d.Time.Dest(&created))
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("listing keys after key %s: %w", f.After, keystore.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("listing keys after key %s: %w", f.After, err)
		}
		q += " AND (k.created_at, k.id) > (" + arg(s.d.Time.Value(created)) + ", " + arg(f.After) + ")"
	}
	q += " ORDER BY k.created_at, k.id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	return s.listKeys(ctx, s.db, q, args...)
}

// statusWhere is the condition that a key of keygate_keys k has status
// at the time in placeholder now, decided exactly as Key.Status decides
// it: revocation wins over expiry, expiry over a start still to come, and
// a revocation still to come (a rotation's grace) is none yet.
func statusWhere(status, now string) string {
	notRevoked := "(k.revoked_at IS NULL OR k.revoked_at > " + now + ")"
	notExpired := "(k.expires_at IS NULL OR k.expires_at > " + now + ")"
	switch status {
	case keystore.StatusRevoked:
		return "k.revoked_at IS NOT NULL AND k.revoked_at <= " + now
	case keystore.StatusExpired:
		return notRevoked + " AND k.expires_at IS NOT NULL AND k.expires_at <= " + now
	case keystore.StatusNotYetValid:
		return notRevoked + " AND " + notExpired + " AND k.not_before IS NOT NULL AND k.not_before > " + now
	case keystore.StatusActive:
		return notRevoked + " AND " + notExpired + " AND (k.not_before IS NULL OR k.not_before <= " + now + ")"
	}
	panic("statusWhere: unknown status " + status) // ListFilter.Validate refuses it first
}

// listKeys runs a query of keystore.KeySelect and reads the keys.
func (s *Store) listKeys(ctx context.Context, q Querier, query string, args ...any) ([]*keystore.Key, error) {
	rows, err := q.Query(ctx, query, args...)
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
	k, err := s.d.ScanKey(q.QueryRow(ctx, keystore.KeySelect+" WHERE k.id = $1", id))
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
	var pepperID any
	if k.PepperID != "" {
		pepperID = k.PepperID
	}
	_, err = q.Exec(ctx, "INSERT INTO keygate_keys ("+keystore.KeyColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
		k.ID, k.Digest[:], k.Name, k.Owner, scopes, metadata, k.Hint,
		s.d.Time.Value(k.CreatedAt), s.d.Time.null(k.ExpiresAt), s.d.Time.null(k.RevokedAt), keystore.LimitsText(k.Limits), s.d.Time.null(k.NotBefore), k.Replaces, k.ReplacedBy, keystore.CIDRText(k.AllowCIDRs),
		pepperID)
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
		"UPDATE keygate_keys SET revoked_at = $2 WHERE id = $1 AND (revoked_at IS NULL OR revoked_at > $2)"+keystore.KeyReturning, id, s.d.Time.Value(at)))
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
func (t tx) Append(ctx context.Context, e *audit.Event) error  { return t.s.append(ctx, t.q, e) }
func (t tx) Update(ctx context.Context, k *keystore.Key) error { return t.s.update(ctx, t.q, k) }
func (t tx) Retire(ctx context.Context, id, replacedBy string, at time.Time) (*keystore.Key, error) {
	return t.s.retire(ctx, t.q, id, replacedBy, at)
}

// retire marks a key that is not revoked as replaced by another and
// revoked from at on.
func (s *Store) retire(ctx context.Context, q Querier, id, replacedBy string, at time.Time) (*keystore.Key, error) {
	k, err := s.d.ScanKey(q.QueryRow(ctx,
		"UPDATE keygate_keys SET replaced_by = $2, revoked_at = $3 WHERE id = $1 AND revoked_at IS NULL"+keystore.KeyReturning,
		id, replacedBy, s.d.Time.Value(at)))
	if errors.Is(err, keystore.ErrNotFound) {
		if _, gerr := s.get(ctx, q, id); gerr != nil {
			return nil, gerr
		}
		return nil, fmt.Errorf("key %s is revoked or being retired already", id)
	}
	if err != nil {
		return nil, fmt.Errorf("retiring key %s: %w", id, err)
	}
	return k, nil
}
func (t tx) Delete(ctx context.Context, id string) (*keystore.Key, error) {
	return t.s.delete(ctx, t.q, id)
}

// update writes a key's changeable fields; the change feed tells every
// cache (keygate_keys' triggers).
func (s *Store) update(ctx context.Context, q Querier, k *keystore.Key) error {
	scopes, metadata, err := s.d.KeyCollections(keystore.KeyCollections(k))
	if err != nil {
		return err
	}
	n, err := q.Exec(ctx, "UPDATE keygate_keys SET name = $2, owner = $3, scopes = $4, metadata = $5, expires_at = $6, limits = $7, not_before = $8, allow_cidrs = $9 WHERE id = $1",
		k.ID, k.Name, k.Owner, scopes, metadata, s.d.Time.null(k.ExpiresAt), keystore.LimitsText(k.Limits), s.d.Time.null(k.NotBefore),
		keystore.CIDRText(k.AllowCIDRs))
	if err != nil {
		return fmt.Errorf("updating key %s: %w", k.ID, err)
	}
	if n == 0 {
		return keystore.ErrNotFound
	}
	return nil
}

// delete removes a key's record; its usage and audit events stay.
func (s *Store) delete(ctx context.Context, q Querier, id string) (*keystore.Key, error) {
	k, err := s.get(ctx, q, id)
	if err != nil {
		return nil, err
	}
	if _, err := q.Exec(ctx, "DELETE FROM keygate_keys WHERE id = $1", id); err != nil {
		return nil, fmt.Errorf("deleting key %s: %w", id, err)
	}
	return k, nil
}

func (t tx) OwnerKeys(ctx context.Context, owner string) ([]*keystore.Key, error) {
	return t.s.ownerKeys(ctx, t.q, owner)
}

// ownerKeys returns every key of owner once no other transaction can
// change keygate_keys until this one ends (SQLite's write lock is held
// from BEGIN).
func (s *Store) ownerKeys(ctx context.Context, q Querier, owner string) ([]*keystore.Key, error) {
	if s.d.LockKeys != "" {
		if _, err := q.Exec(ctx, s.d.LockKeys); err != nil {
			return nil, fmt.Errorf("locking the keys of owner %q: %w", owner, err)
		}
	}
	keys, err := s.listKeys(ctx, q, keystore.KeySelect+" WHERE k.owner = $1 ORDER BY k.created_at, k.id", owner)
	if err != nil {
		return nil, fmt.Errorf("owner %q: %w", owner, err)
	}
	return keys, nil
}

func (t tx) SetOwnerLimits(ctx context.Context, owner string, l *keystore.Limits) (*keystore.Limits, error) {
	return t.s.setOwnerLimits(ctx, t.q, owner, l)
}

// OwnerLimits returns the limits an owner's keys share.
func (s *Store) OwnerLimits(ctx context.Context, owner string) (*keystore.Limits, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	return s.ownerLimits(ctx, s.db, owner)
}

func (s *Store) ownerLimits(ctx context.Context, q Querier, owner string) (*keystore.Limits, error) {
	var text string
	err := q.QueryRow(ctx, "SELECT limits FROM keygate_owners WHERE owner = $1", owner).Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the limits of owner %q: %w", owner, err)
	}
	return keystore.ParseLimits(text)
}

func (s *Store) setOwnerLimits(ctx context.Context, q Querier, owner string, l *keystore.Limits) (*keystore.Limits, error) {
	before, err := s.ownerLimits(ctx, q, owner)
	if err != nil {
		return nil, err
	}
	if l.IsZero() {
		_, err = q.Exec(ctx, "DELETE FROM keygate_owners WHERE owner = $1", owner)
	} else {
		_, err = q.Exec(ctx, `INSERT INTO keygate_owners (owner, limits) VALUES ($1, $2)
ON CONFLICT (owner) DO UPDATE SET limits = excluded.limits`, owner, keystore.LimitsText(l))
	}
	if err != nil {
		return nil, fmt.Errorf("setting the limits of owner %q: %w", owner, err)
	}
	// Touching the owner's keys tells every cache holding one of them
	// (the change feed follows keygate_keys).
	if _, err := q.Exec(ctx, "UPDATE keygate_keys SET owner = owner WHERE owner = $1", owner); err != nil {
		return nil, fmt.Errorf("telling caches about owner %q: %w", owner, err)
	}
	return before, nil
}
