package sqlite

import (
	"context"
	"database/sql"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/internal/sqlstore"
)

// querier is what the database and a transaction share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// conn runs sqlstore's statements on the database or in a transaction.
type conn struct{ q querier }

func (c conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := c.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c conn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	rows, err := c.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (c conn) QueryRow(ctx context.Context, query string, args ...any) keystore.Scanner {
	return c.q.QueryRowContext(ctx, query, args...)
}

// sqlRows are *sql.Rows as sqlstore closes them: deferred, its error
// unused (a failed read shows in Err).
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// db is the database as sqlstore uses it.
type db struct {
	conn
	db *sql.DB
}

func newDB(sqlDB *sql.DB) db { return db{conn{sqlDB}, sqlDB} }

// Begin starts a transaction that holds SQLite's write lock from BEGIN
// (_txlock=immediate): transactions of every process run one after the
// other, which is what keeps the audit chain one chain and lets
// sqlstore's locks be empty.
func (d db) Begin(ctx context.Context) (sqlstore.Tx, error) {
	t, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return tx{conn{t}, t}, nil
}

// tx is a transaction as sqlstore uses it.
type tx struct {
	conn
	tx *sql.Tx
}

func (t tx) Commit(context.Context) error   { return t.tx.Commit() }
func (t tx) Rollback(context.Context) error { return t.tx.Rollback() }

// Interface guards
var (
	_ sqlstore.DB = db{}
	_ sqlstore.Tx = tx{}
)
