package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/keygate/keygate/keystore"
)

// The schema, one file a migration (see keystore.Migration).
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations returns the SQLite schema's migrations.
func migrations() (keystore.Migrations, error) {
	dir, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	return keystore.LoadMigrations(dir, "sqlite")
}

func (s *store) Migrate(ctx context.Context) (applied []int, err error) {
	// _txlock=immediate: the transaction takes the write lock at BEGIN, so
	// two processes migrating at once run one after the other.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("migrating SQLite key store: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS keygate_schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL)`); err != nil {
		return nil, fmt.Errorf("migrating SQLite key store: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM keygate_schema_migrations").Scan(&current); err != nil {
		return nil, fmt.Errorf("migrating SQLite key store: %w", err)
	}
	todo, err := s.migrations.After(current)
	if err != nil {
		return nil, err
	}
	for _, m := range todo {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("migrating SQLite key store: migration %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
			m.Version, m.Name, time.Now().UnixMicro()); err != nil {
			return nil, fmt.Errorf("migrating SQLite key store: %w", err)
		}
		applied = append(applied, m.Version)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("migrating SQLite key store: %w", err)
	}
	return applied, nil
}

// CurrentVersion is the newest applied migration, 0 without a schema.
func (s *store) CurrentVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := s.db.QueryRowContext(ctx,
		"SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'keygate_schema_migrations')").Scan(&exists); err != nil || !exists {
		if err != nil {
			return 0, fmt.Errorf("reading the schema version: %w", err)
		}
		return 0, nil
	}
	var v int
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM keygate_schema_migrations").Scan(&v); err != nil {
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
