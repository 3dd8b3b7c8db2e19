package keystore

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migrations live in migrations/<dialect>/NNNN_name.sql. Each file runs in
// one transaction together with the row that records it in
// keygate_schema_migrations. Files are never edited once released; a
// change is a new file.
//
//go:embed migrations
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the dialect's migrations in version order. The
// files are compiled in, so a malformed name is a build defect; the
// migration tests catch it.
func loadMigrations(dialect string) ([]migration, error) {
	dir := path.Join("migrations", dialect)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s migrations: %w", dialect, err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration file %s/%s is not named NNNN_name.sql", dir, name)
		}
		body, err := fs.ReadFile(migrationFS, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: strings.TrimSuffix(name, ".sql"), sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("%s migrations are not numbered 1..n without gaps (found %d at position %d)", dialect, m.version, i+1)
		}
	}
	return out, nil
}

// checkSchema is what Open does about the schema under mode, given the
// version the database is at (0: no schema).
func checkSchema(mode SchemaMode, dialect string, current int) error {
	if mode != SchemaRequire {
		return nil
	}
	all, err := loadMigrations(dialect)
	if err != nil {
		return err
	}
	switch {
	case current == 0:
		return fmt.Errorf("%w: the database holds no Keygate schema; create it with `caddy api-key migrate`", ErrNoStore)
	case current < len(all):
		return fmt.Errorf("%w (database at version %d, this build needs %d)", ErrSchemaOld, current, len(all))
	case current > len(all):
		return fmt.Errorf("%w (database at version %d, this build knows up to %d)", ErrSchemaTooNew, current, len(all))
	}
	return nil
}

// MigrationNames lists, by name, every migration of the store dsn names
// (what a new store gets).
func MigrationNames(dsn string) ([]string, error) {
	dialect := "postgres"
	if IsSQLite(dsn) {
		dialect = "sqlite"
	}
	return pendingNames(dialect, 0)
}

// pendingNames lists the migrations after version current by name.
func pendingNames(dialect string, current int) ([]string, error) {
	all, err := loadMigrations(dialect)
	if err != nil {
		return nil, err
	}
	todo, err := pending(all, current)
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, m := range todo {
		names = append(names, m.name)
	}
	return names, nil
}

// pending returns the migrations after version current, or
// ErrSchemaTooNew if current is beyond what this build knows.
func pending(all []migration, current int) ([]migration, error) {
	if current > len(all) {
		return nil, fmt.Errorf("%w (database at version %d, this build knows up to %d)", ErrSchemaTooNew, current, len(all))
	}
	return all[current:], nil
}
