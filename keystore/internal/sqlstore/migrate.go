package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Migrate applies the pending migrations, each in the transaction that
// records it, serialised with other migrators by LockMigrations (or
// SQLite's write lock, held from Begin).
func (s *Store) Migrate(ctx context.Context) (applied []int, err error) {
	// Nothing pending: no DDL at all, which a role that may not run it
	// (the management role, a gateway's runtime role) could not.
	if v, err := s.CurrentVersion(ctx); err != nil {
		return nil, err
	} else if v == len(s.migrations) {
		return nil, nil
	}
	err = inTx(ctx, s.db, func(tx Querier) error {
		if s.d.LockMigrations != "" {
			if _, err := tx.Exec(ctx, s.d.LockMigrations); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, s.d.CreateMigrationsTable); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM keygate_schema_migrations").Scan(&current); err != nil {
			return err
		}
		todo, err := s.migrations.After(current)
		if err != nil {
			return err
		}
		for _, m := range todo {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
				m.Version, m.Name, s.d.Time.Value(time.Now())); err != nil {
				return err
			}
			applied = append(applied, m.Version)
		}
		return nil
	})
	if keystore.PermissionDenied(err) {
		return nil, fmt.Errorf("migrating %s key store: %w: %w", s.d.Name, keystore.ErrCannotMigrate, err)
	}
	if err != nil {
		return nil, fmt.Errorf("migrating %s key store: %w", s.d.Name, err)
	}
	return applied, nil
}

// CurrentVersion is the newest applied migration, 0 without a schema.
func (s *Store) CurrentVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := s.db.QueryRow(ctx, s.d.MigrationsTableExists).Scan(&exists); err != nil || !exists {
		if err != nil {
			return 0, fmt.Errorf("reading the schema version: %w", err)
		}
		return 0, nil
	}
	var v int
	if err := s.db.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM keygate_schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the schema version: %w", err)
	}
	return v, nil
}

// Pending returns the names of the migrations Migrate would apply.
func (s *Store) Pending(ctx context.Context) ([]string, error) {
	return keystore.Pending(ctx, s, s.migrations)
}

// SchemaVersion returns the newest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	if err := s.Ready(ctx); err != nil {
		return 0, err
	}
	return s.CurrentVersion(ctx)
}
