package sqlite

import (
	"context"
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// RecordPepperCheck records check unless a value is recorded, and
// returns the recorded one (see keystore.Setup).
func (s *store) RecordPepperCheck(ctx context.Context, check keystore.Digest) ([]byte, error) {
	if _, err := s.db.ExecContext(ctx,
		"INSERT INTO keygate_meta (name, value) VALUES ('pepper_check', ?) ON CONFLICT (name) DO NOTHING", check[:]); err != nil {
		return nil, fmt.Errorf("recording pepper check: %w", err)
	}
	var stored []byte
	if err := s.db.QueryRowContext(ctx, "SELECT value FROM keygate_meta WHERE name = 'pepper_check'").Scan(&stored); err != nil {
		return nil, fmt.Errorf("reading pepper check: %w", err)
	}
	return stored, nil
}

// AcceptPrefix records prefix in keygate_meta, one row per prefix.
func (s *store) AcceptPrefix(ctx context.Context, prefix string) error {
	if err := s.init.Ensure(ctx); err != nil {
		return err
	}
	name, value := keystore.PrefixRecord(prefix)
	if _, err := s.db.ExecContext(ctx, "INSERT INTO keygate_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
		name, value); err != nil {
		return fmt.Errorf("recording the key prefix: %w", err)
	}
	return nil
}

func (s *store) Prefixes(ctx context.Context) ([]keystore.RecordedPrefix, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT name, value FROM keygate_meta WHERE name LIKE 'prefix:%' ORDER BY name")
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

func (s *store) ResetPepperCheck(ctx context.Context) error {
	if err := s.init.Ensure(ctx); err != nil {
		return err
	}
	// _txlock=immediate: the write lock is held from BEGIN, so no key can
	// be inserted between the count and the delete.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM keygate_keys").Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return keystore.NotEmpty(n)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM keygate_meta WHERE name = 'pepper_check'"); err != nil {
		return err
	}
	return tx.Commit()
}
