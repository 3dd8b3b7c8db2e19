package keystore

import (
	"crypto/rand"
	"fmt"
	"strings"
)

// Legacy keys are keys that a system before Keygate issued, imported
// (Lifecycle.Import) so that the clients holding them keep working
// unchanged. They have no Keygate layout: no prefix, no embedded id, no
// checksum. A gateway accepts them only with its legacy_keys option, and
// looks them up by digest like any other key; the store gives them a
// Keygate id of their own.
const (
	// MinLegacyKeyLen is the shortest legacy key Keygate takes. Shorter
	// keys are too easy to guess to be worth keeping: rotate their
	// holders to Keygate keys instead.
	MinLegacyKeyLen = 16
	// MaxLegacyKeyLen is the longest.
	MaxLegacyKeyLen = 256
	// LegacyHintPrefix starts the hint of every legacy key. No key
	// prefix can contain ':', so no Keygate key's hint starts with it.
	LegacyHintPrefix = "legacy:"
)

// LegacyKeyError says why a string is not a legacy key. It never quotes
// the key.
type LegacyKeyError struct{ Reason string }

func (e *LegacyKeyError) Error() string { return "not a usable legacy key: " + e.Reason }

// CheckLegacyKey tells whether key can be imported and used as a legacy
// key: MinLegacyKeyLen to MaxLegacyKeyLen visible ASCII characters (what
// an HTTP header or a bearer token can carry unchanged), not starting
// like a key of any of the Keygate prefixes given (a mistyped Keygate key
// must be refused as malformed, never looked up).
func CheckLegacyKey(key string, prefixes ...string) error {
	if len(key) < MinLegacyKeyLen || len(key) > MaxLegacyKeyLen {
		return &LegacyKeyError{fmt.Sprintf("it is %d characters long; legacy keys must have %d to %d "+
			"(shorter keys are too easy to guess: give their holders Keygate keys)", len(key), MinLegacyKeyLen, MaxLegacyKeyLen)}
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c > '~' {
			return &LegacyKeyError{fmt.Sprintf("character %d is not visible ASCII (spaces, control characters and non-ASCII cannot pass through HTTP headers unchanged)", i+1)}
		}
	}
	for _, p := range prefixes {
		if strings.HasPrefix(key, p+"_") {
			return &LegacyKeyError{fmt.Sprintf("it starts like a Keygate key with prefix %q; Keygate keys are issued, not imported", p)}
		}
	}
	return nil
}

// IsLegacyCandidate reports, without allocating, whether a string that
// failed f.Parse may be looked up as a legacy key by a gateway that
// accepts them: the rules of CheckLegacyKey with f's prefix.
func (f Format) IsLegacyCandidate(key string) bool {
	if len(key) < MinLegacyKeyLen || len(key) > MaxLegacyKeyLen || strings.HasPrefix(key, f.prefix) {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// LegacyKey returns a legacy key as the hasher takes it. Its ID is empty:
// only the stored record knows the key's id.
func LegacyKey(key string) ParsedKey { return ParsedKey{Key: key} }

// legacyHint is what lists show of a legacy key: its last four characters
// when the key is long enough that they give little away (as with a card
// number), else nothing.
func legacyHint(key string) string {
	if len(key) < 24 {
		return LegacyHintPrefix + "..."
	}
	return LegacyHintPrefix + "..." + key[len(key)-4:]
}

// IsLegacy reports whether k was imported from a legacy system rather
// than issued by Keygate.
func (k *Key) IsLegacy() bool { return strings.HasPrefix(k.Hint, LegacyHintPrefix) }

// newID returns a random key id for a key that does not embed one.
func newID() (string, error) {
	var b [IDLen]byte
	if err := randomBase62(rand.Reader, b[:]); err != nil {
		return "", err
	}
	return string(b[:]), nil
}
