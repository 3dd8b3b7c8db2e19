package keystore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/keygate/keygate/audit"
)

// pgStore is the PostgreSQL Store, shared by every gateway instance of a
// deployment. It connects lazily (see Open) and migrates on first use.
type pgStore struct {
	pool *pgxpool.Pool
	opts Options
	init *readiness
}

// migrationLockID is the advisory lock that serialises migrations when
// several instances start at once ("keygate" in ASCII).
const migrationLockID int64 = 0x6b657967617465

func openPostgres(ctx context.Context, dsn string, opts Options) (*pgStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing PostgreSQL DSN %s: %w", RedactDSN(dsn), err)
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
	s := &pgStore{pool: pool, opts: opts}
	s.init = newReadiness(s.setup)
	if err := s.init.ensure(ctx); err != nil && pgPermanent(err) {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// pgPermanent tells errors that retrying cannot fix from outages.
func pgPermanent(err error) bool {
	if errors.Is(err, ErrPepperMismatch) || errors.Is(err, ErrPepperCheckCorrupt) || errors.Is(err, ErrSchemaTooNew) ||
		errors.Is(err, ErrSchemaOld) || errors.Is(err, ErrNoStore) {
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

func (s *pgStore) setup(ctx context.Context) error {
	if s.opts.Schema == SchemaMigrate {
		if _, err := s.Migrate(ctx); err != nil {
			return err
		}
	} else {
		v, err := s.currentVersion(ctx)
		if err != nil {
			return err
		}
		if err := checkSchema(s.opts.Schema, "postgres", v); err != nil {
			return err
		}
		if v == 0 {
			return nil // SchemaAsIs on an empty database: nothing to check yet
		}
	}
	if s.opts.PepperCheck != (Digest{}) {
		return s.checkPepper(ctx, s.opts.PepperCheck)
	}
	return nil
}

func (s *pgStore) Migrate(ctx context.Context) (applied []int, err error) {
	all, err := loadMigrations("postgres")
	if err != nil {
		return nil, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS keygate_schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var current int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM keygate_schema_migrations").Scan(&current); err != nil {
			return err
		}
		todo, err := pending(all, current)
		if err != nil {
			return err
		}
		for _, m := range todo {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO keygate_schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
				return err
			}
			applied = append(applied, m.version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrating PostgreSQL key store: %w", err)
	}
	return applied, nil
}

// currentVersion is the newest applied migration, 0 without a schema.
func (s *pgStore) currentVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT to_regclass('keygate_schema_migrations') IS NOT NULL").Scan(&exists); err != nil || !exists {
		if err != nil {
			return 0, fmt.Errorf("reading the schema version: %w", err)
		}
		return 0, nil
	}
	var v int
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM keygate_schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the schema version: %w", err)
	}
	return v, nil
}

func (s *pgStore) Pending(ctx context.Context) ([]string, error) {
	v, err := s.currentVersion(ctx)
	if err != nil {
		return nil, err
	}
	return pendingNames("postgres", v)
}

func (s *pgStore) SchemaVersion(ctx context.Context) (int, error) {
	if err := s.init.ensure(ctx); err != nil {
		return 0, err
	}
	return s.currentVersion(ctx)
}

func (s *pgStore) checkPepper(ctx context.Context, check Digest) error {
	if _, err := s.pool.Exec(ctx,
		"INSERT INTO keygate_meta (name, value) VALUES ('pepper_check', $1) ON CONFLICT (name) DO NOTHING", check[:]); err != nil {
		return fmt.Errorf("recording pepper check: %w", err)
	}
	var stored []byte
	if err := s.pool.QueryRow(ctx, "SELECT value FROM keygate_meta WHERE name = 'pepper_check'").Scan(&stored); err != nil {
		return fmt.Errorf("reading pepper check: %w", err)
	}
	return comparePepperCheck(stored, check)
}

const pgKeyColumns = "id, digest, name, owner, scopes, metadata, hint, created_at, expires_at, revoked_at"

func scanPGKey(row pgx.Row) (*Key, error) {
	var (
		k       Key
		digest  []byte
		exp     *time.Time
		revoked *time.Time
	)
	if err := row.Scan(&k.ID, &digest, &k.Name, &k.Owner, &k.Scopes, &k.Metadata, &k.Hint, &k.CreatedAt, &exp, &revoked); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	if len(digest) != DigestLen {
		return nil, fmt.Errorf("key %s has a corrupt digest", k.ID)
	}
	k.Digest = Digest(digest)
	k.CreatedAt = k.CreatedAt.UTC()
	if exp != nil {
		k.ExpiresAt = exp.UTC()
	}
	if revoked != nil {
		k.RevokedAt = revoked.UTC()
	}
	normalize(&k)
	return &k, nil
}

func (s *pgStore) Lookup(ctx context.Context, d Digest) (*Key, error) {
	if err := s.init.ensure(ctx); err != nil {
		return nil, err
	}
	const q = "SELECT " + pgKeyColumns + " FROM keygate_keys WHERE digest = $1"
	k, err := scanPGKey(s.pool.QueryRow(ctx, q, d[:]))
	// A pooled connection the server ended (a restart, an administrator's
	// pg_terminate_backend) fails at once. One such failure is retried on
	// another connection; a second one means the server ended many
	// sessions, and the pool (which pings only connections idle for a
	// second) may hold more of them, so it is emptied before a last try.
	// The query only reads; repeating it is safe.
	if err != nil && retryable(ctx, err) {
		k, err = scanPGKey(s.pool.QueryRow(ctx, q, d[:]))
		if err != nil && retryable(ctx, err) {
			s.pool.Reset()
			k, err = scanPGKey(s.pool.QueryRow(ctx, q, d[:]))
		}
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("looking up key: %w", err)
	}
	return k, err
}

func (s *pgStore) List(ctx context.Context, f ListFilter) ([]*Key, error) {
	if err := s.init.ensure(ctx); err != nil {
		return nil, err
	}
	q := "SELECT " + pgKeyColumns + " FROM keygate_keys WHERE ($1 = '' OR owner = $1)"
	args := []any{f.Owner}
	if !f.IncludeInactive {
		q += " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)"
		args = append(args, listNow(f))
	}
	q += " ORDER BY created_at, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	defer rows.Close()
	var out []*Key
	for rows.Next() {
		k, err := scanPGKey(rows)
		if err != nil {
			return nil, fmt.Errorf("listing keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	return out, nil
}

func (s *pgStore) Close() { s.pool.Close() }

// retryable reports whether err is a connection failure worth one more
// attempt: not the caller's deadline, not an answer to the query, but a
// broken connection or a server that ended the session (FATAL, such as
// 57P01 after pg_terminate_backend or a shutdown).
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, ErrNotFound) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Severity == "FATAL" || strings.HasPrefix(pgErr.Code, "57P")
	}
	return true
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// AcceptPrefix records prefix in keygate_meta, one row per prefix.
func (s *pgStore) AcceptPrefix(ctx context.Context, prefix string) error {
	if err := s.init.ensure(ctx); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO keygate_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
		prefixMetaPrefix+prefix, []byte(now().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("recording the key prefix: %w", err)
	}
	return nil
}

func (s *pgStore) Prefixes(ctx context.Context) ([]RecordedPrefix, error) {
	if err := s.init.ensure(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, "SELECT name, value FROM keygate_meta WHERE name LIKE 'prefix:%' ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("reading the key prefixes: %w", err)
	}
	defer rows.Close()
	out := []RecordedPrefix{}
	for rows.Next() {
		var name string
		var value []byte
		if err := rows.Scan(&name, &value); err != nil {
			return nil, fmt.Errorf("reading the key prefixes: %w", err)
		}
		at, _ := time.Parse(time.RFC3339, string(value)) // zero for an unreadable value
		out = append(out, RecordedPrefix{Prefix: strings.TrimPrefix(name, prefixMetaPrefix), At: at})
	}
	return out, rows.Err()
}

func (s *pgStore) ResetPepperCheck(ctx context.Context) error {
	if err := s.init.ensure(ctx); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Keys inserted meanwhile wait for this lock, then see no check
		// value and record their process's pepper: never a key without one.
		if _, err := tx.Exec(ctx, "LOCK TABLE keygate_keys IN SHARE ROW EXCLUSIVE MODE"); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM keygate_keys").Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w (%d, revoked ones included): resetting the pepper would make every one of them unusable; "+
				"to start over with another pepper, use a new store", ErrStoreNotEmpty, n)
		}
		_, err := tx.Exec(ctx, "DELETE FROM keygate_meta WHERE name = 'pepper_check'")
		return err
	})
}

// pgQuerier is what the pool and a transaction share: each operation is
// written once and runs in either.
type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (s *pgStore) Get(ctx context.Context, id string) (*Key, error) {
	if err := s.init.ensure(ctx); err != nil {
		return nil, err
	}
	return pgGet(ctx, s.pool, id)
}

func pgInsert(ctx context.Context, q pgQuerier, k *Key) error {
	_, err := q.Exec(ctx, "INSERT INTO keygate_keys ("+pgKeyColumns+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
		k.ID, k.Digest[:], k.Name, k.Owner, nonNilScopes(k.Scopes), nonNilMetadata(k.Metadata), k.Hint,
		k.CreatedAt, nullTime(k.ExpiresAt), nullTime(k.RevokedAt))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("inserting key %s: %w", k.ID, err)
	}
	return nil
}

func pgGet(ctx context.Context, q pgQuerier, id string) (*Key, error) {
	k, err := scanPGKey(q.QueryRow(ctx, "SELECT "+pgKeyColumns+" FROM keygate_keys WHERE id = $1", id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("reading key %s: %w", id, err)
	}
	return k, err
}

func pgRevoke(ctx context.Context, q pgQuerier, id string, at time.Time) (*Key, bool, error) {
	k, err := scanPGKey(q.QueryRow(ctx,
		"UPDATE keygate_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING "+pgKeyColumns, id, at.UTC()))
	if err == nil {
		return k, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, fmt.Errorf("revoking key %s: %w", id, err)
	}
	// Either there is no such key or it was revoked before.
	k, err = pgGet(ctx, q, id)
	return k, false, err
}

// Change runs f in one transaction.
func (s *pgStore) Change(ctx context.Context, f func(Tx) error) error {
	if err := s.init.ensure(ctx); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return f(pgTx{tx}) })
}

type pgTx struct{ tx pgx.Tx }

func (t pgTx) Get(ctx context.Context, id string) (*Key, error) { return pgGet(ctx, t.tx, id) }
func (t pgTx) Insert(ctx context.Context, k *Key) error         { return pgInsert(ctx, t.tx, k) }
func (t pgTx) Revoke(ctx context.Context, id string, at time.Time) (*Key, bool, error) {
	return pgRevoke(ctx, t.tx, id, at)
}

// Append serialises appenders on a lock of the audit table that only
// writers take (SHARE ROW EXCLUSIVE conflicts with itself, not with
// readers), held until the transaction ends: the head read here is still
// the head when the event is inserted, in every process.
func (t pgTx) Append(ctx context.Context, e *audit.Event) error {
	if _, err := t.tx.Exec(ctx, "LOCK TABLE keygate_audit IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("appending an audit event: %w", err)
	}
	seq, prev, err := pgHead(ctx, t.tx)
	if err != nil {
		return err
	}
	audit.Seal(e, seq, prev)
	if _, err := t.tx.Exec(ctx, "INSERT INTO keygate_audit (seq, at, actor, action, key_id, owner, before, after, prev, hash) "+
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
		e.Seq, e.Time, e.Actor, e.Action, e.KeyID, e.Owner, e.Before, e.After, e.Prev, e.Hash); err != nil {
		return fmt.Errorf("appending an audit event: %w", err)
	}
	return nil
}

func pgHead(ctx context.Context, q pgQuerier) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := q.QueryRow(ctx, "SELECT seq, hash FROM keygate_audit ORDER BY seq DESC LIMIT 1").Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading the audit chain's head: %w", err)
	}
	return seq, hash, nil
}

func (s *pgStore) Head(ctx context.Context) (audit.Head, error) {
	if err := s.init.ensure(ctx); err != nil {
		return audit.Head{}, err
	}
	seq, hash, err := pgHead(ctx, s.pool)
	return audit.Head{Seq: seq, Hash: hash}, err
}

func (s *pgStore) Events(ctx context.Context, f audit.Filter, each func(*audit.Event) error) error {
	if err := s.init.ensure(ctx); err != nil {
		return err
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	rows, err := s.pool.Query(ctx, "SELECT seq, at, actor, action, key_id, owner, before, after, prev, hash FROM keygate_audit "+
		"WHERE seq > $1 AND ($2 = '' OR key_id = $2) AND ($3 = '' OR owner = $3) AND ($4::timestamptz IS NULL OR at >= $4) ORDER BY seq",
		f.AfterSeq, f.KeyID, f.Owner, since)
	if err != nil {
		return fmt.Errorf("reading audit events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e audit.Event
		if err := rows.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &e.KeyID, &e.Owner, &e.Before, &e.After, &e.Prev, &e.Hash); err != nil {
			return fmt.Errorf("reading audit events: %w", err)
		}
		e.Time = e.Time.UTC()
		if err := each(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
