package keystore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/audit"
)

// Errors a Store returns; match them with errors.Is.
var (
	// ErrNotFound: no key has that digest or id.
	ErrNotFound = errors.New("key not found")
	// ErrDuplicate: a key with that id or digest already exists.
	ErrDuplicate = errors.New("a key with this id already exists")
	// ErrPepperMismatch: the store was initialised with another pepper
	// (and none of this process's peppers is registered in it), so every
	// key this process would hash or issue would be wrong.
	ErrPepperMismatch = errors.New("the pepper does not match the one this key store was first used with (or any registered in a pepper rotation since); " +
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
	// Lookup returns the key with digest d, or ErrNotFound.
	Lookup(ctx context.Context, d Digest) (*Key, error)
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
	// Update writes k's name, owner, scopes, metadata, expiry and limits
	// to the key with k's id, or returns ErrNotFound.
	Update(ctx context.Context, k *Key) error
	// Retire marks the key with id, which must not be revoked, as
	// replaced by another key and revoked from at on (a rotation's grace
	// ends then).
	Retire(ctx context.Context, id, replacedBy string, at time.Time) (*Key, error)
	// Delete removes the key with id and returns it, or ErrNotFound.
	Delete(ctx context.Context, id string) (*Key, error)
	// OwnerKeys returns every key of owner, revoked ones included, ordered
	// by creation time, then id. It first locks keygate_keys against
	// changes from other transactions until this one ends, so that the keys
	// it returns are all the owner has until then: a key inserted for the
	// owner meanwhile waits, and comes after.
	OwnerKeys(ctx context.Context, owner string) ([]*Key, error)
	// SetOwnerLimits sets the limits an owner's keys share (nil clears
	// them) and returns the ones it replaced. Every cache holding one of
	// the owner's keys is told, as for a change of the key.
	SetOwnerLimits(ctx context.Context, owner string, l *Limits) (before *Limits, err error)
}

// Store keeps key records, their usage and their audit trail. It is the
// union of the small interfaces below, which say what each part of
// Keygate needs from it; the backends (packages keystore/postgres and
// keystore/sqlite) implement all of them. Implementations are safe for
// concurrent use, and every method honours the context's deadline.
type Store interface {
	Keys
	UsageStore
	CounterStore
	AuditLog
	ChangeFeed
	Migrator
	Registry
	SigningKeys
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
	// Rehash replaces the digest of the key with id, made with an older
	// pepper, by to, made with the pepper pepperID, during a pepper
	// rotation. The change reaches caches like any other. It does
	// nothing and returns false when the key's digest is no longer from
	// (another process re-hashed it, or it is gone), and refuses
	// (ErrNotNewestPepper) unless pepperID is the newest pepper
	// registered in the store. Not audited: the key, its secret and its
	// rights stay the same.
	Rehash(ctx context.Context, id string, from, to Digest, pepperID string) (bool, error)
	// Get returns the key with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Key, error)
	// List returns the keys f selects, ordered by creation time, then
	// id. It refuses a filter that does not pass ListFilter.Validate.
	List(ctx context.Context, f ListFilter) ([]*Key, error)
	// Change runs f in one transaction: key changes and the audit events
	// that record them commit together or not at all.
	Change(ctx context.Context, f func(Tx) error) error
	// OwnerLimits returns the limits an owner's keys share; nil for none.
	OwnerLimits(ctx context.Context, owner string) (*Limits, error)
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
	// PepperUses returns the peppers registered in the store, oldest
	// first, then any other pepper id keys carry, with how many keys each
	// pepper hashed, judging working keys at now.
	PepperUses(ctx context.Context, now time.Time) ([]PepperUse, error)
}

// ListFilter selects keys for Store.List, which returns them ordered by
// creation time, then id.
type ListFilter struct {
	// Owner, if set, keeps only that owner's keys.
	Owner string
	// Statuses, if not empty, keeps only the keys whose Status at Now is
	// one of them; nil (or empty) keeps every key, whatever its status.
	// WorkingStatuses are those of the keys that work or will.
	Statuses []string
	// Now is the time statuses are judged at; zero means time.Now().
	Now time.Time
	// After, if set, is the id of the last key of the previous page: the
	// keys listed come strictly after it in (creation time, id) order. A
	// key that does not exist (any more) is an error matching ErrNotFound,
	// not an empty page.
	After string
	// Limit caps the number of keys; zero means no cap.
	Limit int
}

// Validate checks f before it reaches a store: every status is one Key.Status
// returns, and the limit is not negative.
func (f ListFilter) Validate() error {
	for _, s := range f.Statuses {
		if !slices.Contains(allStatuses, s) {
			return fmt.Errorf("unknown key status %q (valid: %s)", s, strings.Join(allStatuses, ", "))
		}
	}
	if f.Limit < 0 {
		return fmt.Errorf("limit %d is negative", f.Limit)
	}
	return nil
}

// allStatuses are every answer of Key.Status.
var allStatuses = []string{StatusActive, StatusNotYetValid, StatusRevoked, StatusExpired}

// AllStatuses returns every status a key can have.
func AllStatuses() []string { return slices.Clone(allStatuses) }

// WorkingStatuses returns the statuses of keys that work now or will
// without a change: active and not yet valid.
func WorkingStatuses() []string { return []string{StatusActive, StatusNotYetValid} }

// Options configure Open.
type Options struct {
	// PepperCheck, if not zero, is compared with the value recorded by the
	// first process that used the store with a pepper (recorded now if
	// there is none). A mismatch makes the store unusable with
	// ErrPepperMismatch.
	PepperCheck Digest
	// PreviousPepperChecks and NextPepperCheck are those of the
	// process's other peppers in a pepper rotation (Peppers.SetOptions).
	// The store is usable if any of the peppers is registered in it;
	// opening registers the others, where the role may: previous ones,
	// the current, then the next, which so becomes the newest.
	PreviousPepperChecks []Digest
	NextPepperCheck      Digest
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

// RecordedPrefix is a key prefix a gateway accepted, and when it last
// said so.
type RecordedPrefix struct {
	Prefix string
	At     time.Time
}

// now is the store's clock, truncated to the precision both databases keep.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
