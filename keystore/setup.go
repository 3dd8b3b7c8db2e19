package keystore

import (
	"context"
	"slices"
)

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
	// RegisteredPeppers returns the check values of the peppers
	// registered for a rotation, oldest first.
	RegisteredPeppers(ctx context.Context) ([][]byte, error)
	// RegisterPeppers registers the peppers with checks, in order, after
	// those registered already: the last becomes the newest.
	RegisterPeppers(ctx context.Context, checks []Digest) error
}

// Setup is a store's one-time setup, which its Readiness runs: it
// migrates the schema or checks its version, as opts.Schema says, against
// the backend's migrations all, then checks opts.PepperCheck against the
// recorded one (ErrPepperMismatch, ErrPepperCheckCorrupt) and, in a pepper
// rotation, registers the process's peppers the store does not know yet.
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
	if len(stored) != DigestLen {
		return comparePepperCheck(stored, opts.PepperCheck) // corrupt
	}
	return setupPeppers(ctx, s, Digest(stored), opts)
}

// setupPeppers accepts the process's peppers if any of them is the
// recorded first pepper or one registered in a rotation since, and then
// registers the others: previous ones first, then the current, then the
// next, which so becomes the newest. A role that may not register them
// (a gateway's runtime role) leaves that to the management role; keys
// are re-hashed only to the newest registered pepper.
func setupPeppers(ctx context.Context, s SetupStore, first Digest, opts Options) error {
	registered, err := s.RegisteredPeppers(ctx)
	if err != nil {
		return err
	}
	known := map[Digest]bool{first: true}
	for _, r := range registered {
		if len(r) == DigestLen {
			known[Digest(r)] = true
		}
	}
	mine := append(slices.Clone(opts.PreviousPepperChecks), opts.PepperCheck)
	if opts.NextPepperCheck != (Digest{}) {
		mine = append(mine, opts.NextPepperCheck)
	}
	var unknown []Digest
	accepted := false
	for _, c := range mine {
		if known[c] {
			accepted = true
		} else {
			unknown = append(unknown, c)
		}
	}
	if !accepted {
		return ErrPepperMismatch
	}
	if len(registered) == 0 {
		// The registry starts with the store's first pepper.
		unknown = append([]Digest{first}, unknown...)
	}
	if len(unknown) == 0 {
		return nil
	}
	if err := s.RegisterPeppers(ctx, unknown); err != nil && !PermissionDenied(err) {
		return err
	}
	return nil
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
