package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/internal/sqlstore"
)

// querier is what the pool and a transaction share.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// conn runs sqlstore's statements on the pool or in a transaction.
type conn struct{ q querier }

func (c conn) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := c.q.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (c conn) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	rows, err := c.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (c conn) QueryRow(ctx context.Context, sql string, args ...any) keystore.Scanner {
	return c.q.QueryRow(ctx, sql, args...)
}

// db is the pool as sqlstore uses it.
type db struct {
	conn
	pool *pgxpool.Pool
}

func newDB(pool *pgxpool.Pool) db { return db{conn{pool}, pool} }

func (d db) Begin(ctx context.Context) (sqlstore.Tx, error) {
	t, err := d.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return tx{conn{t}, t}, nil
}

// tx is a transaction as sqlstore uses it.
type tx struct {
	conn
	tx pgx.Tx
}

func (t tx) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t tx) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

// Interface guards
var (
	_ sqlstore.DB = db{}
	_ sqlstore.Tx = tx{}
)
