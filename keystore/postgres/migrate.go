package postgres

import (
	"embed"
	"io/fs"

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
