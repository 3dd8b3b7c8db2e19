package keystore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Errors a Store returns; match them with errors.Is.
var (
	// ErrNotFound: no key has that digest or id.
	ErrNotFound = errors.New("key not found")
	// ErrDuplicate: a key with that id or digest already exists.
	ErrDuplicate = errors.New("a key with this id already exists")
	// ErrPepperMismatch: the store was initialised with another pepper,
	// so every key this process would hash or issue would be wrong.
	ErrPepperMismatch = errors.New("the pepper does not match the one this key store was first used with; " +
		"use the same pepper as the gateway (directive 'pepper', flag --pepper or KEYGATE_PEPPER)")
	// ErrSchemaTooNew: the database was migrated by a newer Keygate.
	ErrSchemaTooNew = errors.New("the key store's schema is newer than this Keygate build; upgrade Keygate")
)

// Store keeps key records. Implementations are safe for concurrent use.
// Every method honours the context's deadline.
type Store interface {
	// Insert adds a new key. It fails with ErrDuplicate if the id or
	// digest is taken.
	Insert(ctx context.Context, k *Key) error
	// Lookup returns the key with digest d, or ErrNotFound. This is the
	// request path's only query.
	Lookup(ctx context.Context, d Digest) (*Key, error)
	// Get returns the key with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Key, error)
	// List returns keys ordered by creation time, then id.
	List(ctx context.Context, f ListFilter) ([]*Key, error)
	// Revoke marks the key revoked at the given time. Revoking a revoked
	// key changes nothing and reports changed == false.
	Revoke(ctx context.Context, id string, at time.Time) (k *Key, changed bool, err error)
	// Migrate applies pending schema migrations and returns the versions
	// it applied. Opening a store migrates too; this is for operators who
	// want to do it as a separate step.
	Migrate(ctx context.Context) ([]int, error)
	// Watch reports key changes made by any process to h until ctx ends,
	// reconnecting as needed; it returns ctx.Err(). PostgreSQL uses
	// LISTEN/NOTIFY, SQLite polls a change log.
	Watch(ctx context.Context, h ChangeHandler) error
	// SchemaVersion returns the newest applied migration.
	SchemaVersion(ctx context.Context) (int, error)
	// Close releases the store's connections.
	Close()
}

// ListFilter selects keys for Store.List.
type ListFilter struct {
	// Owner, if set, keeps only that owner's keys.
	Owner string
	// IncludeInactive also returns revoked and expired keys.
	IncludeInactive bool
	// Now decides what counts as expired; zero means time.Now().
	Now time.Time
	// Limit caps the number of keys; zero means no cap.
	Limit int
}

// Options configure Open.
type Options struct {
	// PepperCheck, if not zero, is compared with the value recorded by the
	// first process that used the store with a pepper (recorded now if
	// there is none). A mismatch makes the store unusable with
	// ErrPepperMismatch.
	PepperCheck Digest
	// MaxConns bounds the connection pool; zero picks a default.
	MaxConns int
}

// DSN kinds accepted by Open.
const (
	schemeSQLite = "sqlite:"
)

// Open connects to the store named by dsn and migrates it:
//
//	postgres://user:pass@host:5432/db?sslmode=disable   PostgreSQL (also postgresql://)
//	sqlite:/var/lib/keygate/keys.db                     embedded SQLite file
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
	if IsSQLite(dsn) {
		return openSQLite(ctx, SQLitePath(dsn), opts)
	}
	return openPostgres(ctx, dsn, opts)
}

// ValidateDSN checks the form of a DSN without connecting to anything, so
// that callers can reject a mistyped one before acting on it.
func ValidateDSN(dsn string) error {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return nil
	case IsSQLite(dsn):
		path := SQLitePath(dsn)
		if path == "" {
			return errors.New("sqlite: DSN has no file path (use sqlite:/path/to/keys.db)")
		}
		if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
			return fmt.Errorf("sqlite path %q must be a plain file path without '?', '#' or 'file:'", path)
		}
		return nil
	case dsn == "":
		return errors.New("no database configured")
	default:
		return fmt.Errorf("unsupported database %q: use postgres://… or sqlite:PATH", RedactDSN(dsn))
	}
}

// IsSQLite reports whether dsn names an embedded SQLite store.
func IsSQLite(dsn string) bool { return strings.HasPrefix(dsn, schemeSQLite) }

// SQLitePath returns the file path of a sqlite: DSN.
func SQLitePath(dsn string) string {
	p := strings.TrimPrefix(dsn, schemeSQLite)
	if strings.HasPrefix(p, "//") {
		p = p[2:]
	}
	return p
}

// RedactDSN hides passwords in a DSN (in the user information and in a
// password query parameter) so that it can be logged or shown in an error.
func RedactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return redactUnparsable(dsn)
	}
	if u.Scheme == "" || u.Opaque != "" {
		return dsn
	}
	changed := false
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
		changed = true
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
		changed = true
	}
	if !changed {
		return dsn
	}
	return u.String()
}

// redactUnparsable hides whatever sits between "scheme://user:" and the
// last "@" of a DSN that is not a valid URL.
func redactUnparsable(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if colon := strings.IndexByte(userinfo, ':'); colon >= 0 {
		return dsn[:scheme+3] + userinfo[:colon] + ":xxxxx" + dsn[at:]
	}
	return dsn
}

// now is the store's clock, truncated to the precision both databases keep.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// normalize makes records from both stores compare equal: empty
// collections are nil.
func normalize(k *Key) {
	if len(k.Scopes) == 0 {
		k.Scopes = nil
	}
	if len(k.Metadata) == 0 {
		k.Metadata = nil
	}
}

func nonNilScopes(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMetadata(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func listNow(f ListFilter) time.Time {
	if f.Now.IsZero() {
		return now()
	}
	return f.Now.UTC()
}
