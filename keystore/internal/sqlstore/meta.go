package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// RecordPepperCheck records check unless a value is recorded, and
// returns the recorded one (see keystore.Setup). A recorded value is only
// read, so that a role that may not write keygate_meta (a gateway's
// runtime role) can still compare against it.
func (s *Store) RecordPepperCheck(ctx context.Context, check keystore.Digest) ([]byte, error) {
	stored, err := s.pepperCheck(ctx)
	if err != nil || stored != nil {
		return stored, err
	}
	if _, err := s.db.Exec(ctx,
		"INSERT INTO keygate_meta (name, value) VALUES ('pepper_check', $1) ON CONFLICT (name) DO NOTHING", check[:]); err != nil {
		if keystore.PermissionDenied(err) {
			return nil, fmt.Errorf("%w: %v", keystore.ErrCannotRecordPepperCheck, err)
		}
		return nil, fmt.Errorf("recording pepper check: %w", err)
	}
	if stored, err = s.pepperCheck(ctx); err == nil && stored == nil {
		err = errors.New("reading pepper check: no value after recording it")
	}
	return stored, err
}

// pepperCheck returns the recorded pepper check, nil if there is none.
func (s *Store) pepperCheck(ctx context.Context) ([]byte, error) {
	var stored []byte
	err := s.db.QueryRow(ctx, "SELECT value FROM keygate_meta WHERE name = 'pepper_check'").Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading pepper check: %w", err)
	}
	if stored == nil {
		stored = []byte{} // recorded but empty: comparePepperCheck calls it corrupt
	}
	return stored, nil
}

// AcceptPrefix records prefix in keygate_meta, one row per prefix.
func (s *Store) AcceptPrefix(ctx context.Context, prefix string) error {
	if err := s.Ready(ctx); err != nil {
		return err
	}
	name, value := keystore.PrefixRecord(prefix)
	if _, err := s.db.Exec(ctx, "INSERT INTO keygate_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
		name, value); err != nil {
		return fmt.Errorf("recording the key prefix: %w", err)
	}
	return nil
}

// Prefixes returns the recorded prefixes, sorted.
func (s *Store) Prefixes(ctx context.Context) ([]keystore.RecordedPrefix, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, "SELECT name, value FROM keygate_meta WHERE name LIKE 'prefix:%' ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("reading the key prefixes: %w", err)
	}
	defer rows.Close()
	prefixes, err := keystore.AppendRows([]keystore.RecordedPrefix{}, rows, keystore.ScanPrefixRecord)
	if err != nil {
		return nil, fmt.Errorf("reading the key prefixes: %w", err)
	}
	return prefixes, nil
}

// ResetPepperCheck forgets the recorded pepper check while the store
// holds no key.
func (s *Store) ResetPepperCheck(ctx context.Context) error {
	if err := s.Ready(ctx); err != nil {
		return err
	}
	return inTx(ctx, s.db, func(tx Querier) error {
		// Keys inserted meanwhile wait for this lock (or SQLite's write
		// lock, held from Begin), then see no check value and record
		// their process's pepper: never a key without one.
		if s.d.LockKeys != "" {
			if _, err := tx.Exec(ctx, s.d.LockKeys); err != nil {
				return err
			}
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM keygate_keys").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return keystore.NotEmpty(n)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM keygate_meta WHERE name = 'pepper_check'"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM keygate_peppers")
		return err
	})
}
