// Package postgres is Keygate's PostgreSQL key store (pgx/v5), which
// every gateway instance of a deployment shares: keys, usage counts, the
// audit chain, LISTEN/NOTIFY for key changes, and its schema in
// migrations/. What it does like the SQLite store is written once in
// keystore/internal/sqlstore; this package holds the pool, PostgreSQL's
// dialect, Lookup's retries and the listener. Importing the package
// registers it with keystore.Open for postgres:// and postgresql:// DSNs.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/internal/sqlstore"
)

func init() { keystore.Register("postgres", backend{}) }

// backend is what keystore.Open finds for a postgres:// DSN.
type backend struct{}

func (backend) Open(ctx context.Context, dsn string, opts keystore.Options) (keystore.Store, error) {
	s, err := open(ctx, dsn, opts)
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

// store is the PostgreSQL keystore.Store. It connects lazily (see
// keystore.Open) and migrates on first use.
type store struct {
	*sqlstore.Store
	pool *pgxpool.Pool
}

func open(ctx context.Context, dsn string, opts keystore.Options) (*store, error) {
	all, err := migrations()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing PostgreSQL DSN %s: %w", keystore.RedactDSN(dsn), err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		// Lets operators (and the fault tests) find gateway sessions in
		// pg_stat_activity.
		cfg.ConnConfig.RuntimeParams["application_name"] = "keygate"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = int32(opts.MaxConns)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("creating PostgreSQL pool: %w", err)
	}
	s := &store{Store: sqlstore.New(newDB(pool), dialect, all, opts), pool: pool}
	if err := s.Ready(ctx); err != nil && permanent(err) {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// permanent tells errors that retrying cannot fix from outages.
func permanent(err error) bool {
	if keystore.Permanent(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "28"): // invalid authorization
			return true
		case pgErr.Code == "3D000", pgErr.Code == "3F000": // no such database / schema
			return true
		case pgErr.Code == "42501": // insufficient privilege
			return true
		}
	}
	return false
}

func (s *store) Close() { s.pool.Close() }

// retryable reports whether err is a connection failure worth one more
// attempt: not the caller's deadline, not an answer to the query, but a
// broken connection or a server that ended the session (FATAL, such as
// 57P01 after pg_terminate_backend or a shutdown).
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, keystore.ErrNotFound) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Severity == "FATAL" || strings.HasPrefix(pgErr.Code, "57P")
	}
	return true
}

// Interface guards
var _ keystore.Store = (*store)(nil)
