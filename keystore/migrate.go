package keystore

import (
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Migration is one schema change of a backend: a file NNNN_name.sql
// among the backend's embedded migrations. Each file runs in one
// transaction together with the row that records it in
// keygate_schema_migrations. Files are never edited once released; a
// change is a new file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations are a backend's schema changes in version order, numbered
// 1..n.
type Migrations []Migration

// LoadMigrations reads the dialect's migrations, the NNNN_name.sql files
// at the root of fsys. The files are compiled in, so a malformed name is
// a build defect; the migration tests catch it.
func LoadMigrations(fsys fs.FS, dialect string) (Migrations, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("reading %s migrations: %w", dialect, err)
	}
	var out Migrations
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("%s migration file %s is not named NNNN_name.sql", dialect, name)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(name, ".sql"), SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("%s migrations are not numbered 1..n without gaps (found %d at position %d)", dialect, m.Version, i+1)
		}
	}
	return out, nil
}

// Check is what Open does about the schema under mode, given the version
// the database is at (0: no schema).
func (ms Migrations) Check(mode SchemaMode, current int) error {
	if mode != SchemaRequire {
		return nil
	}
	switch {
	case current == 0:
		return fmt.Errorf("%w: the database holds no Keygate schema; create it with `caddy api-key migrate`", ErrNoStore)
	case current < len(ms):
		return fmt.Errorf("%w (database at version %d, this build needs %d)", ErrSchemaOld, current, len(ms))
	case current > len(ms):
		return fmt.Errorf("%w (database at version %d, this build knows up to %d)", ErrSchemaTooNew, current, len(ms))
	}
	return nil
}

// After returns the migrations after version current, or ErrSchemaTooNew
// if current is beyond what this build knows.
func (ms Migrations) After(current int) (Migrations, error) {
	if current > len(ms) {
		return nil, fmt.Errorf("%w (database at version %d, this build knows up to %d)", ErrSchemaTooNew, current, len(ms))
	}
	return ms[current:], nil
}

// Names lists the migrations by name (empty, not nil, if there are none).
func (ms Migrations) Names() []string {
	names := []string{}
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names
}
