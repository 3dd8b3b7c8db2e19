package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/keygate/keygate/keystore"
)

func testStoreMigrations(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn := kind.NewDSN(t)
	all, err := keystore.MigrationNames(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// Several processes starting at once must not trip over each other.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := keystore.Open(ctx, dsn, keystore.Options{})
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Open: %v", err)
	}
	s := Open(t, dsn, keystore.Options{})
	if v, err := s.SchemaVersion(ctx); err != nil || v != len(all) {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, len(all))
	}
	if applied, err := s.Migrate(ctx); err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v", applied, err)
	}
	// A database migrated by a newer Keygate is refused, not used.
	s.Close()
	bumpSchema(t, kind, dsn, len(all)+1)
	if _, err := keystore.Open(ctx, dsn, keystore.Options{}); !errors.Is(err, keystore.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func bumpSchema(t *testing.T, kind Backend, dsn string, version int) {
	t.Helper()
	kind.Exec(t, dsn, fmt.Sprintf("INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES (%d, 'future', %s)", version, kind.AppliedAt))
}

// testOpenSchemaModes: commands that must not create or migrate a store
// can say so, and Pending tells what Migrate would do.
func testOpenSchemaModes(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn := kind.NewDSN(t)
	all, _ := keystore.MigrationNames(dsn)
	if _, err := keystore.Open(ctx, dsn, keystore.Options{Schema: keystore.SchemaRequire}); !errors.Is(err, keystore.ErrNoStore) {
		t.Fatalf("SchemaRequire on an empty database: %v, want ErrNoStore", err)
	}
	s := Open(t, dsn, keystore.Options{Schema: keystore.SchemaAsIs})
	names, err := s.Pending(ctx)
	if err != nil || len(names) != len(all) || names[0] != all[0] {
		t.Fatalf("Pending on an empty database: %v, %v; want all %d migrations", names, err, len(all))
	}
	applied, err := s.Migrate(ctx)
	if err != nil || len(applied) != len(all) {
		t.Fatalf("Migrate applied %v, %v", applied, err)
	}
	if names, err := s.Pending(ctx); err != nil || len(names) != 0 {
		t.Fatalf("Pending after Migrate: %v, %v", names, err)
	}
	s.Close()
	Open(t, dsn, keystore.Options{Schema: keystore.SchemaRequire}).Close()
	// An older schema is refused, not migrated.
	kind.Exec(t, dsn, fmt.Sprintf("DELETE FROM keygate_schema_migrations WHERE version = %d", len(all)))
	if _, err := keystore.Open(ctx, dsn, keystore.Options{Schema: keystore.SchemaRequire}); !errors.Is(err, keystore.ErrSchemaOld) {
		t.Fatalf("SchemaRequire on an older schema: %v, want ErrSchemaOld", err)
	}
}
