package sqlstore

import (
	"context"

	"github.com/keygate/keygate/keystore"
)

// Querier runs statements, on the pool or in one transaction. Each
// backend adapts its driver to it: pgx, or database/sql.
type Querier interface {
	// Exec runs a statement and returns how many rows it changed.
	Exec(ctx context.Context, sql string, args ...any) (int64, error)
	// Query runs a statement that returns rows.
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
	// QueryRow runs a statement that returns one row; a missing row is
	// an error that matches sql.ErrNoRows (pgx.ErrNoRows does too).
	QueryRow(ctx context.Context, sql string, args ...any) keystore.Scanner
}

// Rows are a query's result; the caller closes them.
type Rows interface {
	keystore.Rows
	Close()
}

// DB is a backend's connection pool.
type DB interface {
	Querier
	// Begin starts a transaction. A backend whose transactions must take
	// a lock at once (SQLite's write lock) takes it here.
	Begin(ctx context.Context) (Tx, error)
}

// Tx is one transaction of a DB.
type Tx interface {
	Querier
	Commit(ctx context.Context) error
	// Rollback ends the transaction unless it was committed.
	Rollback(ctx context.Context) error
}

// inTx runs f in a transaction of its own and commits it if f succeeds.
func inTx(ctx context.Context, db DB, f func(Querier) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	return commitIf(ctx, tx, f)
}

// commitIf runs f in tx, then commits tx if f succeeded and rolls it
// back if not.
func commitIf(ctx context.Context, tx Tx, f func(Querier) error) error {
	defer tx.Rollback(ctx)
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
