package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
)

// signingColumns are a keystore.SigningKey's columns as scanSigningKey
// reads them: a NULL retires_at comes as current = 1.
const signingColumns = "kid, algorithm, public_key, private_key, created_at, activated_at, " +
	"CASE WHEN retires_at IS NULL THEN 1 ELSE 0 END, COALESCE(retires_at, activated_at)"

func (s *Store) scanSigningKey(row keystore.Scanner) (*keystore.SigningKey, error) {
	var (
		k       keystore.SigningKey
		current int64
		retires time.Time
	)
	if err := row.Scan(&k.KID, &k.Algorithm, &k.PublicKey, &k.SealedPrivateKey,
		s.d.Time.Dest(&k.CreatedAt), s.d.Time.Dest(&k.ActivatedAt), &current, s.d.Time.Dest(&retires)); err != nil {
		return nil, err
	}
	k.CreatedAt, k.ActivatedAt = k.CreatedAt.UTC(), k.ActivatedAt.UTC()
	if current == 0 {
		k.RetiresAt = retires.UTC()
	}
	return &k, nil
}

// SigningKeys returns the signing keys published at t (all of them if
// all), newest first.
func (s *Store) SigningKeys(ctx context.Context, t time.Time, all bool) ([]*keystore.SigningKey, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, "SELECT "+signingColumns+" FROM keygate_signing_keys "+
		"WHERE $1 OR retires_at IS NULL OR retires_at > $2 ORDER BY activated_at DESC, CASE WHEN retires_at IS NULL THEN 1 ELSE 0 END DESC, kid DESC", all, s.d.Time.Value(t))
	if err != nil {
		return nil, fmt.Errorf("reading signing keys: %w", err)
	}
	defer rows.Close()
	var keys []*keystore.SigningKey
	for rows.Next() {
		k, err := s.scanSigningKey(rows)
		if err != nil {
			return nil, fmt.Errorf("reading signing keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading signing keys: %w", err)
	}
	return keys, nil
}

// currentSigningKey returns the current key of algorithm, or
// keystore.ErrNoSigningKey.
func (s *Store) currentSigningKey(ctx context.Context, q Querier, algorithm string) (*keystore.SigningKey, error) {
	k, err := s.scanSigningKey(q.QueryRow(ctx, "SELECT "+signingColumns+" FROM keygate_signing_keys "+
		"WHERE algorithm = $1 AND retires_at IS NULL", algorithm))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, keystore.ErrNoSigningKey
	}
	return k, err
}

func (s *Store) insertSigningKey(ctx context.Context, q Querier, k *keystore.SigningKey, onConflict string) (int64, error) {
	return q.Exec(ctx, "INSERT INTO keygate_signing_keys (kid, algorithm, public_key, private_key, created_at, activated_at) "+
		"VALUES ($1, $2, $3, $4, $5, $6)"+onConflict,
		k.KID, k.Algorithm, k.PublicKey, k.SealedPrivateKey, s.d.Time.Value(k.CreatedAt), s.d.Time.Value(k.ActivatedAt))
}

// EnsureSigningKey stores k as the current key of its algorithm unless
// one is: the unique index on current keys makes a second process that
// inserts at the same time do nothing, then read the first one's key.
func (s *Store) EnsureSigningKey(ctx context.Context, k *keystore.SigningKey, e *audit.Event) (*keystore.SigningKey, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	var current *keystore.SigningKey
	err := inTx(ctx, s.db, func(q Querier) error {
		var err error
		if current, err = s.currentSigningKey(ctx, q, k.Algorithm); !errors.Is(err, keystore.ErrNoSigningKey) {
			return err
		}
		n, err := s.insertSigningKey(ctx, q, k, " ON CONFLICT DO NOTHING")
		if err != nil {
			return err
		}
		if n == 1 && e != nil {
			if err := s.append(ctx, q, e); err != nil {
				return err
			}
		}
		current, err = s.currentSigningKey(ctx, q, k.Algorithm)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storing the first signing key: %w", err)
	}
	return current, nil
}

// RotateSigningKey retires the current key of k's algorithm at retireAt
// and makes k current, with event's audit event, in one transaction.
func (s *Store) RotateSigningKey(ctx context.Context, k *keystore.SigningKey, retireAt time.Time,
	event func(prev *keystore.SigningKey) *audit.Event) (*keystore.SigningKey, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	var prev *keystore.SigningKey
	err := inTx(ctx, s.db, func(q Querier) error {
		var err error
		// The update locks the current row: a rotation at the same time
		// waits, finds no current key left to retire, and its insert
		// then fails on the unique index rather than leave two current.
		prev, err = s.scanSigningKey(q.QueryRow(ctx, "UPDATE keygate_signing_keys SET retires_at = $2 "+
			"WHERE algorithm = $1 AND retires_at IS NULL RETURNING "+signingColumns, k.Algorithm, s.d.Time.Value(retireAt)))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			prev = nil
		case err != nil:
			return err
		}
		if _, err := s.insertSigningKey(ctx, q, k, ""); err != nil {
			if s.d.IsDuplicate(err) {
				return errors.New("another rotation of the signing key ran at the same time; run it again")
			}
			return err
		}
		if event != nil {
			if e := event(prev); e != nil {
				return s.append(ctx, q, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rotating the signing key: %w", err)
	}
	return prev, nil
}
