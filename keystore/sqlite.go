package keystore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keygate/keygate/audit"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteStore is the embedded Store: one file, for a single machine. The
// gateway and the CLI may use the file at the same time; WAL mode lets
// readers proceed during a write and busy_timeout makes writers queue.
type sqliteStore struct {
	db   *sql.DB
	path string
	opts Options
	init *readiness
}

// CheckStoreDir returns a warning, or "", about the directory of the
// embedded store dsn names: Open creates it with mode 0700, but an existing
// one keeps whatever mode it has. The store and pepper files in it are
// private either way; a directory others can write lets them replace or
// delete those files, one they can read lets them see what is there. Other
// DSNs, and a directory that does not exist yet, give "". The store
// package has no logger; callers log or print the warning.
func CheckStoreDir(dsn string) (warning string) {
	if !IsSQLite(dsn) || SQLitePath(dsn) == "" {
		return ""
	}
	dir := filepath.Dir(SQLitePath(dsn))
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		return ""
	}
	// The files are 0600; a directory others can only read (a home
	// directory, typically) shows their names, which is no secret. One
	// they can write lets them replace or delete the files.
	if perm := info.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Sprintf("key store directory %s is writable by other users (mode %#o): they can replace or delete "+
			"the key store and its pepper file; run: chmod 700 %s", dir, perm, dir)
	}
	return ""
}

func openSQLite(ctx context.Context, path string, opts Options) (*sqliteStore, error) {
	if opts.MustExist {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: the file %s does not exist (a gateway creates it on start, and so do `caddy api-key create` and `migrate`)", ErrNoStore, path)
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
	s := &sqliteStore{db: db, path: path, opts: opts}
	s.init = newReadiness(s.setup)
	// A local file has no outage to wait out: every error here is one
	// the operator must fix (permissions, a corrupt file, wrong pepper),
	// except a lock another process holds while it creates or migrates the
	// same new file (SQLite does not always wait for that one).
	err = s.init.ensure(ctx)
	for attempt := 0; attempt < 5 && isBusy(err) && ctx.Err() == nil; attempt++ {
		time.Sleep(retryEvery)
		err = s.init.ensure(ctx)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *sqliteStore) setup(ctx context.Context) error {
	if s.opts.Schema == SchemaMigrate {
		if _, err := s.Migrate(ctx); err != nil {
			return err
		}
	} else {
		v, err := s.currentVersion(ctx)
		if err != nil {
			return err
		}
		if err := checkSchema(s.opts.Schema, "sqlite", v); err != nil {
			return err
		}
		if v == 0 {
			return nil // SchemaAsIs on a new file: nothing to check yet
		}
	}
	if s.opts.PepperCheck != (Digest{}) {
		return s.checkPepper(ctx, s.opts.PepperCheck)
	}
	return nil
}

func (s *sqliteStore) Migrate(ctx context.Context) (applied []int, err error) {
	all, err := loadMigrations("sqlite")
	if err != nil {
		return nil, err
	}
	// _txlock=immediate: the transaction takes the write lock at BEGIN, so
	// two processes migrating at once run one after the other.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("migrating SQLite key store: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS keygate_schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL)`); err != nil {
		return nil, fmt.Errorf("migrating SQLite key store: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM keygate_schema_migrations").Scan(&current); err != nil {
		return nil, fmt.Errorf("migrating SQLite key store: %w", err)
	}
	todo, err := pending(all, current)
	if err != nil {
		return nil, err
	}
	for _, m := range todo {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return nil, fmt.Errorf("migrating SQLite key store: migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO keygate_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
			m.version, m.name, now().UnixMicro()); err != nil {
			return nil, fmt.Errorf("migrating SQLite key store: %w", err)
		}
		applied = append(applied, m.version)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("migrating SQLite key store: %w", err)
	}
	return applied, nil
}

// currentVersion is the newest applied migration, 0 without a schema.
func (s *sqliteStore) currentVersion(ctx context.Context) (int, error) {
	var exists bool
	if err := s.db.QueryRowContext(ctx,
		"SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'keygate_schema_migrations')").Scan(&exists); err != nil || !exists {
		if err != nil {
			return 0, fmt.Errorf("reading the schema version: %w", err)
		}
		return 0, nil
	}
	var v int
	if err := s.db.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM keygate_schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the schema version: %w", err)
	}
	return v, nil
}

func (s *sqliteStore) Pending(ctx context.Context) ([]string, error) {
	v, err := s.currentVersion(ctx)
	if err != nil {
		return nil, err
	}
	return pendingNames("sqlite", v)
}

func (s *sqliteStore) SchemaVersion(ctx context.Context) (int, error) {
	if err := s.init.ensure(ctx); err != nil {
		return 0, err
	}
	return s.currentVersion(ctx)
}

func (s *sqliteStore) checkPepper(ctx context.Context, check Digest) error {
	if _, err := s.db.ExecContext(ctx,
		"INSERT INTO keygate_meta (name, value) VALUES ('pepper_check', ?) ON CONFLICT (name) DO NOTHING", check[:]); err != nil {
		return fmt.Errorf("recording pepper check: %w", err)
	}
	var stored []byte
	if err := s.db.QueryRowContext(ctx, "SELECT value FROM keygate_meta WHERE name = 'pepper_check'").Scan(&stored); err != nil {
		return fmt.Errorf("reading pepper check: %w", err)
	}
	return comparePepperCheck(stored, check)
}

const sqliteKeyColumns = "id, digest, name, owner, scopes, metadata, hint, created_at, expires_at, revoked_at"

type scanner interface{ Scan(dest ...any) error }

func scanSQLiteKey(row scanner) (*Key, error) {
	var (
		k                Key
		digest           []byte
		scopes, metadata string
		created          int64
		expires, revoked sql.NullInt64
	)
	if err := row.Scan(&k.ID, &digest, &k.Name, &k.Owner, &scopes, &metadata, &k.Hint, &created, &expires, &revoked); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	if len(digest) != DigestLen {
		return nil, fmt.Errorf("key %s has a corrupt digest", k.ID)
	}
	k.Digest = Digest(digest)
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return nil, fmt.Errorf("key %s has corrupt scopes: %w", k.ID, err)
	}
	if err := json.Unmarshal([]byte(metadata), &k.Metadata); err != nil {
		return nil, fmt.Errorf("key %s has corrupt metadata: %w", k.ID, err)
	}
	k.CreatedAt = time.UnixMicro(created).UTC()
	if expires.Valid {
		k.ExpiresAt = time.UnixMicro(expires.Int64).UTC()
	}
	if revoked.Valid {
		k.RevokedAt = time.UnixMicro(revoked.Int64).UTC()
	}
	normalize(&k)
	return &k, nil
}

func micros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func (s *sqliteStore) Lookup(ctx context.Context, d Digest) (*Key, error) {
	if err := s.init.ensure(ctx); err != nil {
		return nil, err
	}
	k, err := scanSQLiteKey(s.db.QueryRowContext(ctx, "SELECT "+sqliteKeyColumns+" FROM keygate_keys WHERE digest = ?", d[:]))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("looking up key: %w", err)
	}
	return k, err
}

func (s *sqliteStore) List(ctx context.Context, f ListFilter) ([]*Key, error) {
	if err := s.init.ensure(ctx); err != nil {
		return nil, err
	}
	q := "SELECT " + sqliteKeyColumns + " FROM keygate_keys WHERE (?1 = '' OR owner = ?1)"
	args := []any{f.Owner}
	if !f.IncludeInactive {
		q += " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)"
		args = append(args, listNow(f).UnixMicro())
	}
	q += " ORDER BY created_at, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	defer rows.Close()
	var out []*Key
	for rows.Next() {
		k, err := scanSQLiteKey(rows)
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

func (s *sqliteStore) Close() { s.db.Close() }

// AcceptPrefix records prefix in keygate_meta, one row per prefix.
func (s *sqliteStore) AcceptPrefix(ctx context.Context, prefix string) error {
	if err := s.init.ensure(ctx); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, "INSERT INTO keygate_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
		prefixMetaPrefix+prefix, []byte(now().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("recording the key prefix: %w", err)
	}
	return nil
}

func (s *sqliteStore) Prefixes(ctx context.Context) ([]RecordedPrefix, error) {
	if err := s.init.ensure(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT name, value FROM keygate_meta WHERE name LIKE 'prefix:%' ORDER BY name")
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

func (s *sqliteStore) ResetPepperCheck(ctx context.Context) error {
	if err := s.init.ensure(ctx); err != nil {
		return err
	}
	// _txlock=immediate: the write lock is held from BEGIN, so no key can
	// be inserted between the count and the delete.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM keygate_keys").Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%w (%d, revoked ones included): resetting the pepper would make every one of them unusable; "+
			"to start over with another pepper, use a new store", ErrStoreNotEmpty, n)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM keygate_meta WHERE name = 'pepper_check'"); err != nil {
		return err
	}
	return tx.Commit()
}

// isBusy reports whether err is SQLite's "database is locked".
func isBusy(err error) bool {
	var sqlErr *sqlite.Error
	return errors.As(err, &sqlErr) && sqlErr.Code()&0xff == sqlite3.SQLITE_BUSY
}

// sqlQuerier is what the database and a transaction share: each
// operation is written once and runs in either.
type sqlQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *sqliteStore) Get(ctx context.Context, id string) (*Key, error) {
	if err := s.init.ensure(ctx); err != nil {
		return nil, err
	}
	return sqliteGet(ctx, s.db, id)
}

func sqliteInsert(ctx context.Context, q sqlQuerier, k *Key) error {
	scopes, err := json.Marshal(nonNilScopes(k.Scopes))
	if err != nil {
		return err
	}
	metadata, err := json.Marshal(nonNilMetadata(k.Metadata))
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, "INSERT INTO keygate_keys ("+sqliteKeyColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		k.ID, k.Digest[:], k.Name, k.Owner, string(scopes), string(metadata), k.Hint,
		k.CreatedAt.UnixMicro(), micros(k.ExpiresAt), micros(k.RevokedAt))
	var sqlErr *sqlite.Error
	if errors.As(err, &sqlErr) && (sqlErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || sqlErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("inserting key %s: %w", k.ID, err)
	}
	return nil
}

func sqliteGet(ctx context.Context, q sqlQuerier, id string) (*Key, error) {
	k, err := scanSQLiteKey(q.QueryRowContext(ctx, "SELECT "+sqliteKeyColumns+" FROM keygate_keys WHERE id = ?", id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("reading key %s: %w", id, err)
	}
	return k, err
}

func sqliteRevoke(ctx context.Context, q sqlQuerier, id string, at time.Time) (*Key, bool, error) {
	k, err := scanSQLiteKey(q.QueryRowContext(ctx,
		"UPDATE keygate_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING "+sqliteKeyColumns, at.UnixMicro(), id))
	if err == nil {
		return k, true, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, fmt.Errorf("revoking key %s: %w", id, err)
	}
	// Either there is no such key or it was revoked before.
	k, err = sqliteGet(ctx, q, id)
	return k, false, err
}

// Change runs f in one transaction. _txlock=immediate takes SQLite's
// write lock at BEGIN: transactions of every process run one after the
// other, which is what keeps the audit chain one chain.
func (s *sqliteStore) Change(ctx context.Context, f func(Tx) error) error {
	if err := s.init.ensure(ctx); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting a change: %w", err)
	}
	defer tx.Rollback()
	if err := f(sqliteTx{tx}); err != nil {
		return err
	}
	return tx.Commit()
}

type sqliteTx struct{ tx *sql.Tx }

func (t sqliteTx) Get(ctx context.Context, id string) (*Key, error) { return sqliteGet(ctx, t.tx, id) }
func (t sqliteTx) Insert(ctx context.Context, k *Key) error         { return sqliteInsert(ctx, t.tx, k) }
func (t sqliteTx) Revoke(ctx context.Context, id string, at time.Time) (*Key, bool, error) {
	return sqliteRevoke(ctx, t.tx, id, at)
}

func (t sqliteTx) Append(ctx context.Context, e *audit.Event) error {
	seq, prev, err := sqliteHead(ctx, t.tx)
	if err != nil {
		return err
	}
	audit.Seal(e, seq, prev)
	if _, err := t.tx.ExecContext(ctx, "INSERT INTO keygate_audit (seq, at, actor, action, key_id, owner, before, after, prev, hash) "+
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		e.Seq, e.Time.UnixMicro(), e.Actor, e.Action, e.KeyID, e.Owner, e.Before, e.After, e.Prev, e.Hash); err != nil {
		return fmt.Errorf("appending an audit event: %w", err)
	}
	return nil
}

func sqliteHead(ctx context.Context, q sqlQuerier) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := q.QueryRowContext(ctx, "SELECT seq, hash FROM keygate_audit ORDER BY seq DESC LIMIT 1").Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading the audit chain's head: %w", err)
	}
	return seq, hash, nil
}

func (s *sqliteStore) Head(ctx context.Context) (audit.Head, error) {
	if err := s.init.ensure(ctx); err != nil {
		return audit.Head{}, err
	}
	seq, hash, err := sqliteHead(ctx, s.db)
	return audit.Head{Seq: seq, Hash: hash}, err
}

func (s *sqliteStore) Events(ctx context.Context, f audit.Filter, each func(*audit.Event) error) error {
	if err := s.init.ensure(ctx); err != nil {
		return err
	}
	var since any
	if !f.Since.IsZero() {
		since = f.Since.UnixMicro()
	}
	rows, err := s.db.QueryContext(ctx, "SELECT seq, at, actor, action, key_id, owner, before, after, prev, hash FROM keygate_audit "+
		"WHERE seq > ?1 AND (?2 = '' OR key_id = ?2) AND (?3 = '' OR owner = ?3) AND (?4 IS NULL OR at >= ?4) ORDER BY seq",
		f.AfterSeq, f.KeyID, f.Owner, since)
	if err != nil {
		return fmt.Errorf("reading audit events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e audit.Event
		var at int64
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.KeyID, &e.Owner, &e.Before, &e.After, &e.Prev, &e.Hash); err != nil {
			return fmt.Errorf("reading audit events: %w", err)
		}
		e.Time = time.UnixMicro(at).UTC()
		if err := each(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}
