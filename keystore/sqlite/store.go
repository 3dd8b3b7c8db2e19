// Package sqlite is Keygate's embedded key store: one SQLite file
// (modernc.org/sqlite, no cgo) for a single machine, holding keys, usage
// counts, the audit chain and a change log that watchers poll, with its
// schema in migrations/. What it does like the PostgreSQL store is written
// once in keystore/internal/sqlstore; this package holds the file,
// SQLite's dialect and the poller. Importing the package registers it with
// keystore.Open for sqlite: DSNs.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/internal/sqlstore"
)

func init() { keystore.Register("sqlite", backend{}) }

// backend is what keystore.Open finds for a sqlite: DSN.
type backend struct{}

func (backend) Open(ctx context.Context, dsn string, opts keystore.Options) (keystore.Store, error) {
	s, err := open(ctx, keystore.SQLitePath(dsn), opts)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (backend) MigrationNames() ([]string, error) {
	all, err := migrations()
	if err != nil {
		return nil, err
	}
	return all.Names(), nil
}

// store is the embedded keystore.Store. The gateway and the CLI may use
// the file at the same time; WAL mode lets readers proceed during a write
// and busy_timeout makes writers queue.
type store struct {
	*sqlstore.Store
	db *sql.DB
}

func open(ctx context.Context, path string, opts keystore.Options) (*store, error) {
	all, err := migrations()
	if err != nil {
		return nil, err
	}
	if opts.MustExist {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: the file %s does not exist (a gateway creates it on start, and so do `caddy api-key create` and `migrate`)", keystore.ErrNoStore, path)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating directory for key store: %w", err)
	}
	// Create the file ourselves so that it is private from the start;
	// SQLite gives its -wal and -shm files the same mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("opening key store %s: %w", path, err)
	} else {
		f.Close()
	}
	dsn := path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening key store %s: %w", path, err)
	}
	maxConns := opts.MaxConns
	if maxConns <= 0 {
		maxConns = 8
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	s := &store{Store: sqlstore.New(newDB(db), dialect, all, opts), db: db}
	// A local file has no outage to wait out: every error here is one
	// the operator must fix (permissions, a corrupt file, wrong pepper),
	// except a lock another process holds while it creates or migrates the
	// same new file (SQLite does not always wait for that one).
	err = s.Ready(ctx)
	for attempt := 0; attempt < 5 && isBusy(err) && ctx.Err() == nil; attempt++ {
		time.Sleep(keystore.RetryEvery)
		err = s.Ready(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *store) Close() { s.db.Close() }

// isBusy reports whether err is SQLite's "database is locked".
func isBusy(err error) bool {
	var sqlErr *sqlite.Error
	return errors.As(err, &sqlErr) && sqlErr.Code()&0xff == sqlite3.SQLITE_BUSY
}

// Interface guards
var _ keystore.Store = (*store)(nil)
