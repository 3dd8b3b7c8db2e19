package keystore

import (
	"context"
	"errors"
	"fmt"
	"github.com/keygate/keygate/audit"
	"net/url"
	"os"
	"path/filepath"
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
		"use the same pepper as the gateway (directive 'pepper'; CLI --pepper-file, KEYGATE_PEPPER_FILE, KEYGATE_PEPPER or --pepper)")
	// ErrPepperCheckCorrupt: the pepper check value in keygate_meta is not
	// a digest, so no pepper can be verified against it. The store cannot
	// be used until an operator repairs the row.
	ErrPepperCheckCorrupt = errors.New("the pepper check value stored in keygate_meta is corrupt")
	// ErrStoreNotEmpty: the store holds keys, which only the recorded
	// pepper can verify.
	ErrStoreNotEmpty = errors.New("the key store holds keys")
	// ErrNoStore: there is no key store where the DSN points (Options.MustExist
	// or Options.Schema == SchemaRequire).
	ErrNoStore = errors.New("no Keygate key store there")
	// ErrSchemaOld: the store's schema is older than this build and
	// Options.Schema forbids migrating it on open.
	ErrSchemaOld = errors.New("the key store's schema is older than this Keygate build; run `caddy api-key migrate` (or start a gateway, which migrates)")
	// ErrSchemaTooNew: the database was migrated by a newer Keygate.
	ErrSchemaTooNew = errors.New("the key store's schema is newer than this Keygate build; upgrade Keygate")
)

// Tx is one transaction of key changes and the audit events that record
// them: they commit together or not at all. Append the event after the
// change it records: Append holds the chain's head until the transaction
// ends, and every writer taking rows first and the head last cannot
// deadlock.
type Tx interface {
	Get(ctx context.Context, id string) (*Key, error)
	// Insert adds a new key. It fails with ErrDuplicate if the id or
	// digest is taken.
	Insert(ctx context.Context, k *Key) error
	// Revoke marks the key revoked at the given time. Revoking a revoked
	// key changes nothing and reports changed == false.
	Revoke(ctx context.Context, id string, at time.Time) (k *Key, changed bool, err error)
	// Append adds e to the audit chain: the store holds the chain's head,
	// serialised with every other writer in every process, and calls
	// audit.Seal to number, link and hash e.
	Append(ctx context.Context, e *audit.Event) error
}

// Store keeps key records, their usage and their audit trail. It is the
// union of the small interfaces below, which say what each part of
// Keygate needs from it; the backends (packages keystore/postgres and
// keystore/sqlite) implement all of them. Implementations are safe for
// concurrent use, and every method honours the context's deadline.
type Store interface {
	Keys
	UsageStore
	AuditLog
	ChangeFeed
	Migrator
	Registry
	// Close releases the store's connections.
	Close()
}

// Keys reads key records and changes them. Keys change only in a Change
// transaction, which is where their audit events are appended: Lifecycle
// is the one caller.
type Keys interface {
	// Lookup returns the key with digest d, or ErrNotFound. This is the
	// request path's only query.
	Lookup(ctx context.Context, d Digest) (*Key, error)
	// Get returns the key with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Key, error)
	// List returns keys ordered by creation time, then id.
	List(ctx context.Context, f ListFilter) ([]*Key, error)
	// Change runs f in one transaction: key changes and the audit events
	// that record them commit together or not at all.
	Change(ctx context.Context, f func(Tx) error) error
}

// AuditLog reads the audit chain that Tx.Append writes.
type AuditLog interface {
	// Events calls each for the audit events f selects, in chain order.
	Events(ctx context.Context, f audit.Filter, each func(*audit.Event) error) error
	// Head returns the audit chain's last sequence number and hash (Seq 0
	// while it is empty).
	Head(ctx context.Context) (audit.Head, error)
}

// ChangeFeed tells caches which keys changed, in any process.
type ChangeFeed interface {
	// Watch reports key changes made by any process to h until ctx ends,
	// reconnecting as needed; it returns ctx.Err(). PostgreSQL uses
	// LISTEN/NOTIFY, SQLite polls a change log.
	Watch(ctx context.Context, h ChangeHandler) error
}

// Migrator applies and reports the store's schema migrations.
type Migrator interface {
	// Migrate applies pending schema migrations and returns the versions
	// it applied. Opening a store migrates too (unless Options.Schema
	// says otherwise); this is for operators who want a separate step.
	Migrate(ctx context.Context) ([]int, error)
	// Pending returns the names of the migrations Migrate would apply.
	Pending(ctx context.Context) ([]string, error)
	// SchemaVersion returns the newest applied migration.
	SchemaVersion(ctx context.Context) (int, error)
}

// Registry keeps what gateways record about themselves in the store's
// keygate_meta table: the key prefixes they accept and the check value of
// the pepper they hash with.
type Registry interface {
	// AcceptPrefix records that a gateway on this store accepts keys with
	// prefix, as of now, so that the CLI can refuse to make keys no
	// gateway accepts.
	AcceptPrefix(ctx context.Context, prefix string) error
	// Prefixes returns the prefixes gateways recorded, with when each was
	// last recorded, sorted by prefix.
	Prefixes(ctx context.Context) ([]RecordedPrefix, error)
	// ResetPepperCheck forgets the recorded pepper check, so that the
	// next process with a pepper records its own: a way back from a
	// mistyped first pepper. It refuses (ErrStoreNotEmpty) while the store
	// holds any key, since those keys work with the recorded pepper only.
	ResetPepperCheck(ctx context.Context) error
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
	// MustExist refuses to create an embedded store that does not exist
	// yet (ErrNoStore): commands that only read or change keys must not
	// leave an empty store behind a mistyped path.
	MustExist bool
	// Schema says what opening does about the schema.
	Schema SchemaMode
}

// SchemaMode is what Open does about the schema.
type SchemaMode int

const (
	// SchemaMigrate applies pending migrations on first use (gateways).
	SchemaMigrate SchemaMode = iota
	// SchemaRequire requires the schema this build knows, as it is: no
	// schema is ErrNoStore, an older one ErrSchemaOld.
	SchemaRequire
	// SchemaAsIs leaves the schema alone (for Migrate and Pending).
	SchemaAsIs
)

// prefixMetaPrefix starts the keygate_meta names of recorded prefixes;
// the value is when the prefix was last recorded (RFC 3339).
const prefixMetaPrefix = "prefix:"

// RecordedPrefix is a key prefix a gateway accepted, and when it last
// said so.
type RecordedPrefix struct {
	Prefix string
	At     time.Time
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
		if rest := strings.TrimPrefix(dsn, schemeSQLite); strings.HasPrefix(rest, "//") && !strings.HasPrefix(rest, "///") {
			return fmt.Errorf("sqlite DSN %q names the relative path %q: write sqlite:/absolute/path (or sqlite:///absolute/path)", dsn, path)
		}
		if strings.HasPrefix(path, "~") {
			return fmt.Errorf("sqlite path %q: only ~/ (your home directory) is expanded, not ~user; use an absolute path", path)
		}
		return nil
	case dsn == "":
		return errors.New("no database configured")
	default:
		return unsupportedDSN(dsn)
	}
}

// unsupportedDSN explains why dsn is refused without repeating it: a
// mistyped setting may hold a password in a form no redaction knows, or
// another secret altogether (a pepper put in the wrong place).
func unsupportedDSN(dsn string) error {
	if scheme, _, ok := strings.Cut(dsn, ":"); ok && len(scheme) <= 16 && isURLScheme(scheme) {
		return fmt.Errorf("unsupported database scheme %q: use postgres://… or sqlite:PATH", scheme)
	}
	if strings.Contains(dsn, "=") {
		return errors.New("unsupported database: key=value connection strings are not supported; " +
			"use a postgres:// URL (or sqlite:PATH)")
	}
	return errors.New("unsupported database: use postgres://… or sqlite:PATH")
}

// isURLScheme reports whether s is a URL scheme (RFC 3986, section 3.1).
func isURLScheme(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// IsSQLite reports whether dsn names an embedded SQLite store.
func IsSQLite(dsn string) bool { return strings.HasPrefix(dsn, schemeSQLite) }

// SQLitePath returns the file path of a sqlite: DSN.
func SQLitePath(dsn string) string {
	p := strings.TrimPrefix(dsn, schemeSQLite)
	if strings.HasPrefix(p, "//") {
		p = p[2:]
	}
	// "~/" is the user's home directory, as a shell would have it; a
	// directory literally named "~" is never meant.
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[2:])
		}
	}
	return p
}

// RedactDSN hides passwords in a DSN so that it can be logged or shown in
// an error: the password of the user information and the value of every
// query parameter whose name contains "password" (password, sslpassword,
// in any case or percent-encoding) of a URL, even one that does not
// parse, and the same parameters of the key=value form
// (host=… password=…).
func RedactDSN(dsn string) string {
	if !strings.Contains(dsn, "://") {
		return redactKeyValue(dsn)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return redactUnparsable(dsn)
	}
	if u.Scheme == "" || u.Opaque != "" {
		return dsn
	}
	changed := false
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redactedPassword)
		changed = true
	}
	if q, ok := redactQuery(u.RawQuery); ok {
		u.RawQuery = q
		changed = true
	}
	if !changed {
		return dsn
	}
	return u.String()
}

const redactedPassword = "xxxxx"

// isPasswordParam reports whether a parameter name (raw, as in a URL
// query) names a password.
func isPasswordParam(raw string) bool {
	name, err := url.QueryUnescape(raw)
	if err != nil {
		name = raw
	}
	return strings.Contains(strings.ToLower(name), "password")
}

// redactQuery masks the password parameters of a raw URL query, keeping
// everything else as written, and reports whether it masked any.
func redactQuery(raw string) (string, bool) {
	if raw == "" {
		return raw, false
	}
	parts := strings.Split(raw, "&")
	changed := false
	for i, part := range parts {
		name, value, _ := strings.Cut(part, "=")
		if value != "" && isPasswordParam(name) {
			parts[i] = name + "=" + redactedPassword
			changed = true
		}
	}
	return strings.Join(parts, "&"), changed
}

// redactUnparsable hides whatever sits between "scheme://user:" and the
// last "@" of a DSN that is not a valid URL, and the password parameters
// of its query.
func redactUnparsable(dsn string) string {
	scheme := strings.Index(dsn, "://")
	if scheme < 0 {
		return dsn
	}
	rest := dsn[scheme+3:]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if colon := strings.IndexByte(rest[:at], ':'); colon >= 0 {
			rest = rest[:colon] + ":" + redactedPassword + rest[at:]
		}
	}
	// The query starts at the first '?' after the user information.
	from := strings.LastIndex(rest, "@") + 1
	if q := strings.IndexByte(rest[from:], '?'); q >= 0 {
		q += from + 1
		end := len(rest)
		if hash := strings.IndexByte(rest[q:], '#'); hash >= 0 {
			end = q + hash
		}
		masked, _ := redactQuery(rest[q:end])
		rest = rest[:q] + masked + rest[end:]
	}
	return dsn[:scheme+3] + rest
}

// redactKeyValue masks the password values of a key=value DSN
// ("host=h password='a b'"): values may be single-quoted, with backslash
// escapes, and spaces may surround '='. It never fails: text it cannot
// make sense of is left as it is, and an unterminated value runs to the
// end.
func redactKeyValue(dsn string) string {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	var out strings.Builder
	copied, i := 0, 0
	for i < len(dsn) {
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		keyStart := i
		for i < len(dsn) && dsn[i] != '=' && !isSpace(dsn[i]) {
			i++
		}
		key := dsn[keyStart:i]
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		if i >= len(dsn) || dsn[i] != '=' {
			continue
		}
		i++
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		valueStart := i
		quoted := i < len(dsn) && dsn[i] == '\''
		if quoted {
			i++
		}
		for i < len(dsn) {
			c := dsn[i]
			if quoted && c == '\'' {
				i++
				break
			}
			if !quoted && isSpace(c) {
				break
			}
			if c == '\\' {
				i++
			}
			i++
		}
		i = min(i, len(dsn))
		if i > valueStart && strings.Contains(strings.ToLower(key), "password") {
			out.WriteString(dsn[copied:valueStart])
			out.WriteString(redactedPassword)
			copied = i
		}
	}
	if copied == 0 {
		return dsn
	}
	out.WriteString(dsn[copied:])
	return out.String()
}

// comparePepperCheck compares the pepper check value a store holds with
// the one of this process's pepper. Both backends use it.
func comparePepperCheck(stored []byte, check Digest) error {
	if len(stored) != DigestLen {
		return fmt.Errorf("%w (%d bytes, want %d); the store cannot be used until an operator repairs it: "+
			"delete the row (DELETE FROM keygate_meta WHERE name = 'pepper_check') only if you are sure which pepper "+
			"the stored keys were made with, then start a gateway or run the CLI with that pepper to record it again",
			ErrPepperCheckCorrupt, len(stored), DigestLen)
	}
	if !check.Equal(Digest(stored)) {
		return ErrPepperMismatch
	}
	return nil
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
