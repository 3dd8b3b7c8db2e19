package keystore

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// What every backend does alike with its rows is written once, here: the
// backends hold the SQL and turn their database's types into these.

// Scanner is one row to read: pgx.Row and pgx.Rows are, and so are
// *sql.Row and *sql.Rows.
type Scanner interface {
	Scan(dest ...any) error
}

// Rows are a query's result, as pgx.Rows and *sql.Rows hold it.
type Rows interface {
	Scanner
	Next() bool
	Err() error
}

// AppendRows reads each of rows with scan and appends what it read to
// out.
func AppendRows[T any](out []T, rows Rows, scan func(Scanner) (T, error)) ([]T, error) {
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// KeyColumns are the columns of keygate_keys in the order the backends
// write them.
const KeyColumns = "id, digest, name, owner, scopes, metadata, hint, created_at, expires_at, revoked_at, limits, not_before, replaces, replaced_by, allow_cidrs, pepper_id"

// KeySelect reads keys: KeyColumns (pepper_id empty for none), then the
// limits of the key's owner (empty for none), from keygate_keys as k. Add a
// WHERE clause.
const KeySelect = "SELECT k.id, k.digest, k.name, k.owner, k.scopes, k.metadata, k.hint, k.created_at, k.expires_at, k.revoked_at, k.limits, k.not_before, k.replaces, k.replaced_by, k.allow_cidrs, coalesce(k.pepper_id, ''), " +
	"coalesce(o.limits, '') FROM keygate_keys k LEFT JOIN keygate_owners o ON o.owner = k.owner AND k.owner <> ''"

// KeyReturning is the RETURNING clause of a statement that changes a key:
// KeyColumns as KeySelect reads them, without the owner's limits.
const KeyReturning = " RETURNING id, digest, name, owner, scopes, metadata, hint, created_at, expires_at, revoked_at, limits, not_before, replaces, replaced_by, allow_cidrs, coalesce(pepper_id, ''), ''"

// ScannedKey completes a key a backend read from keygate_keys, given the
// stored digest: it refuses a corrupt digest, puts the times in UTC and
// makes empty collections nil, so that every backend returns equal keys.
func ScannedKey(k *Key, digest []byte) (*Key, error) {
	if len(digest) != DigestLen {
		return nil, fmt.Errorf("key %s has a corrupt digest", k.ID)
	}
	k.Digest = Digest(digest)
	k.CreatedAt = k.CreatedAt.UTC()
	if !k.ExpiresAt.IsZero() {
		k.ExpiresAt = k.ExpiresAt.UTC()
	}
	if !k.NotBefore.IsZero() {
		k.NotBefore = k.NotBefore.UTC()
	}
	if !k.RevokedAt.IsZero() {
		k.RevokedAt = k.RevokedAt.UTC()
	}
	normalize(k)
	return k, nil
}

// normalize makes records from every backend compare equal: empty
// collections are nil.
func normalize(k *Key) {
	if len(k.Scopes) == 0 {
		k.Scopes = nil
	}
	if len(k.Metadata) == 0 {
		k.Metadata = nil
	}
}

// KeyCollections returns k's scopes and metadata as the backends store
// them: empty, never nil.
func KeyCollections(k *Key) (scopes []string, metadata map[string]string) {
	scopes, metadata = k.Scopes, k.Metadata
	if scopes == nil {
		scopes = []string{}
	}
	if metadata == nil {
		metadata = map[string]string{}
	}
	return scopes, metadata
}

// At returns the time f judges expiry at: f.Now, or the current time.
func (f ListFilter) At() time.Time {
	if f.Now.IsZero() {
		return now()
	}
	return f.Now.UTC()
}

// comparePepperCheck compares the pepper check value a store holds with
// the one of this process's pepper.
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

// NotEmpty is ResetPepperCheck's refusal for a store that holds n keys.
func NotEmpty(n int) error {
	return fmt.Errorf("%w (%d, revoked ones included): resetting the pepper would make every one of them unusable; "+
		"to start over with another pepper, use a new store", ErrStoreNotEmpty, n)
}

// prefixMetaPrefix starts the keygate_meta names of recorded prefixes;
// the value is when the prefix was last recorded (RFC 3339). The backends
// select these rows with LIKE 'prefix:%'.
const prefixMetaPrefix = "prefix:"

// PrefixRecord returns the keygate_meta row that records prefix as
// accepted now.
func PrefixRecord(prefix string) (name string, value []byte) {
	return prefixMetaPrefix + prefix, []byte(now().Format(time.RFC3339))
}

// ScanPrefixRecord reads a row (name, value) that PrefixRecord made; an
// unreadable time is zero.
func ScanPrefixRecord(row Scanner) (RecordedPrefix, error) {
	var name string
	var value []byte
	if err := row.Scan(&name, &value); err != nil {
		return RecordedPrefix{}, err
	}
	at, _ := time.Parse(time.RFC3339, string(value))
	return RecordedPrefix{Prefix: strings.TrimPrefix(name, prefixMetaPrefix), At: at}, nil
}

// Permanent reports whether err is one of the store's refusals that no
// retry can fix: a backend that waits out outages gives up on these.
func Permanent(err error) bool {
	return errors.Is(err, ErrPepperMismatch) || errors.Is(err, ErrPepperCheckCorrupt) || errors.Is(err, ErrSchemaTooNew) ||
		errors.Is(err, ErrSchemaOld) || errors.Is(err, ErrNoStore) || errors.Is(err, ErrCannotMigrate) ||
		errors.Is(err, ErrCannotRecordPepperCheck)
}
