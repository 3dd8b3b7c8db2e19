package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

// The schema, one file a migration (see keystore.Migration).
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations returns the PostgreSQL schema's migrations.
func migrations() (keystore.Migrations, error) {
	dir, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	return keystore.LoadMigrations(dir, "postgres")
}

// migrationLockID is the advisory lock that serialises migrations when
// several instances start at once ("keygate" in ASCII).
const migrationLockID int64 = 0x6b657967617465

func (s *store) Migrate(ctx context.Context) (applied []int, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS keygate_schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
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
			if _, err := tx.Exec(ctx, "INSERT INTO keygate_schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return err
			}
			applied = append(applied, m.Version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrating PostgreSQL key store: %w", err)
	}
	return applied, nil
}

// CurrentVersion is the newest applied migration, 0 without a schema.
func (s *store) CurrentVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT to_regclass('keygate_schema_migrations') IS NOT NULL").Scan(&exists); err != nil || !exists {
		if err != nil {
			return 0, fmt.Errorf("reading the schema version: %w", err)
		}
		return 0, nil
	}
	var v int
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM keygate_schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the schema version: %w", err)
	}
	return v, nil
}

func (s *store) Pending(ctx context.Context) ([]string, error) {
	return keystore.Pending(ctx, s, s.migrations)
}

func (s *store) SchemaVersion(ctx context.Context) (int, error) {
	if err := s.init.Ensure(ctx); err != nil {
		return 0, err
	}
	return s.CurrentVersion(ctx)
}
