package keystore

import (
	"context"
	"fmt"
	"sync"
)

// Backend is a kind of key store: PostgreSQL (package keystore/postgres)
// or SQLite (package keystore/sqlite). As with database/sql drivers, each
// backend package registers itself in its init function, and a program
// links the backends it imports:
//
//	import _ "github.com/keygate/keygate/keystore/sqlite"
type Backend interface {
	// Open connects to the store dsn names; ValidateDSN accepted dsn.
	Open(ctx context.Context, dsn string, opts Options) (Store, error)
	// MigrationNames lists, by name, every migration a new store gets.
	MigrationNames() ([]string, error)
}

var (
	backendsMu sync.RWMutex
	backends   = map[string]Backend{}
)

// Register makes b the backend named name: the name of its package below
// keystore ("postgres", "sqlite"), which is what the DSN forms that
// ValidateDSN accepts map to. It panics if b is nil or name is taken.
func Register(name string, b Backend) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	if b == nil {
		panic("keystore: Register of a nil backend " + name)
	}
	if _, dup := backends[name]; dup {
		panic("keystore: Register called twice for backend " + name)
	}
	backends[name] = b
}

// backendFor returns the backend of dsn, which ValidateDSN accepted.
func backendFor(dsn string) (Backend, error) {
	name := "postgres"
	if IsSQLite(dsn) {
		name = "sqlite"
	}
	backendsMu.RLock()
	b := backends[name]
	backendsMu.RUnlock()
	if b == nil {
		return nil, fmt.Errorf("the %s key store is not linked into this program: import _ \"github.com/keygate/keygate/keystore/%s\"", name, name)
	}
	return b, nil
}

// Open connects to the store named by dsn and migrates it:
//
//	postgres://user:pass@host:5432/db?sslmode=disable   PostgreSQL (also postgresql://)
//	sqlite:/var/lib/keygate/keys.db                     embedded SQLite file
//
// The backend must be linked into the program (see Register); a DSN of
// one that is not gets an error that names the package to import.
//
// For PostgreSQL, Open does not fail when the server cannot be reached:
// the store connects and migrates on first use and keeps retrying, so a
// gateway can start (or reload) during a database outage and answer 503
// until the database is back. Errors that no retry can fix (bad DSN,
// authentication, missing database, pepper mismatch) are returned at once
// if the server answers.
func Open(ctx context.Context, dsn string, opts Options) (Store, error) {
	if err := ValidateDSN(dsn); err != nil {
		return nil, err
	}
	b, err := backendFor(dsn)
	if err != nil {
		return nil, err
	}
	return b.Open(ctx, dsn, opts)
}

// MigrationNames lists, by name, every migration of the store dsn names
// (what a new store gets).
func MigrationNames(dsn string) ([]string, error) {
	b, err := backendFor(dsn)
	if err != nil {
		return nil, err
	}
	return b.MigrationNames()
}
