// Package sqlstore is what Keygate's SQL backends share: keys, the audit
// chain, usage, the registry in keygate_meta and the migration runner,
// each written once against a small Querier that the backends adapt their
// drivers to (pgx, database/sql). A backend supplies its connections, a
// Dialect for what its database does differently, its migrations, and
// what Store does not do: Close, Watch (LISTEN/NOTIFY, or a polled change
// log) and Lookup, the request path's one query, which each backend runs
// straight on its driver (through Querier its arguments would escape to
// the heap).
package sqlstore

import (
	"context"

	"github.com/keygate/keygate/keystore"
)

// Store implements keystore.Store but for Lookup, Watch and Close. A
// backend's store embeds it.
type Store struct {
	db         DB
	d          *Dialect
	migrations keystore.Migrations
	init       *keystore.Readiness
}

// New returns the store of db, whose schema is all. It connects and
// migrates on first use (keystore.Setup, as opts say); see Ready.
func New(db DB, d *Dialect, all keystore.Migrations, opts keystore.Options) *Store {
	s := &Store{db: db, d: d, migrations: all}
	s.init = keystore.NewReadiness(func(ctx context.Context) error { return keystore.Setup(ctx, s, all, opts) })
	return s
}

// Ready runs the store's one-time setup unless it succeeded before; every
// method that needs the schema calls it first.
func (s *Store) Ready(ctx context.Context) error { return s.init.Ensure(ctx) }
