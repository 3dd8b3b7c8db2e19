package keystore

import "context"

// SetupStore is what Setup needs of a backend's store.
type SetupStore interface {
	// Migrate applies pending migrations (Migrator.Migrate).
	Migrate(ctx context.Context) ([]int, error)
	// CurrentVersion returns the newest applied migration, 0 without a
	// schema.
	CurrentVersion(ctx context.Context) (int, error)
	// RecordPepperCheck records check as the store's pepper check value
	// unless one is recorded already, and returns the recorded one.
	RecordPepperCheck(ctx context.Context, check Digest) (stored []byte, err error)
}

// Setup is a store's one-time setup, which its Readiness runs: it
// migrates the schema or checks its version, as opts.Schema says, against
// the backend's migrations all, then checks opts.PepperCheck against the
// recorded one (ErrPepperMismatch, ErrPepperCheckCorrupt).
func Setup(ctx context.Context, s SetupStore, all Migrations, opts Options) error {
	if opts.Schema == SchemaMigrate {
		// Read the version first and run DDL only for pending
		// migrations: a gateway's runtime role may read the schema but
		// neither create nor change it.
		v, err := s.CurrentVersion(ctx)
		if err != nil {
			return err
		}
		if _, err := all.After(v); err != nil {
			return err
		}
		if v < len(all) {
			if _, err := s.Migrate(ctx); err != nil {
				return err // ErrCannotMigrate for a role that may not
			}
		}
	} else {
		v, err := s.CurrentVersion(ctx)
		if err != nil {
			return err
		}
		if err := all.Check(opts.Schema, v); err != nil {
			return err
		}
		if v == 0 {
			return nil // SchemaAsIs on an empty store: nothing to check yet
		}
	}
	if opts.PepperCheck == (Digest{}) {
		return nil
	}
	stored, err := s.RecordPepperCheck(ctx, opts.PepperCheck)
	if err != nil {
		return err
	}
	return comparePepperCheck(stored, opts.PepperCheck)
}

// Pending returns the names of the migrations of all that s has not
// applied yet (Migrator.Pending).
func Pending(ctx context.Context, s SetupStore, all Migrations) ([]string, error) {
	v, err := s.CurrentVersion(ctx)
	if err != nil {
		return nil, err
	}
	todo, err := all.After(v)
	if err != nil {
		return nil, err
	}
	return todo.Names(), nil
}
