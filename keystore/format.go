package keystore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unsafe"
)

// Layout of a key after "<prefix>_":
//
//	id (IDLen) "_" secret (secretLen) checksum (checksumLen)
const (
	// DefaultPrefix is the key prefix used when none is configured.
	DefaultPrefix = "kg"
	// MaxPrefixLen keeps every key within MaxKeyLen characters.
	MaxPrefixLen = 16
	// IDLen is the length of the public key id: 12 base62 characters,
	// about 71 random bits, enough that ids never need coordination.
	IDLen = 12
	// secretLen base62 characters carry 43*log2(62) ≈ 256.03 bits.
	secretLen = 43
	// checksumLen base62 characters hold a CRC32 (62^6 > 2^32).
	checksumLen = 6
	// bodyLen is everything after "<prefix>_".
	bodyLen = IDLen + 1 + secretLen + checksumLen
	// MaxKeyLen is the longest key any valid prefix can produce.
	MaxKeyLen = MaxPrefixLen + 1 + bodyLen
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ErrMalformedKey is matched (errors.Is) by every error Parse returns.
// The concrete errors name the check that failed and never quote the key.
var ErrMalformedKey = errors.New("malformed API key")

type formatError struct{ reason string }

func (e *formatError) Error() string        { return "malformed API key: " + e.reason }
func (e *formatError) Is(target error) bool { return target == ErrMalformedKey }

// The reasons Parse can give. They are preallocated so that a flood of
// garbage keys costs no allocations.
var (
	errPrefix   = &formatError{"wrong prefix"}
	errLength   = &formatError{"wrong length"}
	errAlphabet = &formatError{"character outside [A-Za-z0-9_]"}
	errLayout   = &formatError{"id and secret are not separated by '_'"}
	errChecksum = &formatError{"checksum mismatch"}
)

// Format generates and parses keys with one prefix.
// The zero value is not usable; create one with NewFormat.
type Format struct {
	prefix string // includes the trailing '_'
}

// NewFormat returns the key format for prefix; an empty prefix means
// DefaultPrefix. A prefix is 1 to MaxPrefixLen characters of [A-Za-z0-9],
// optionally split by single underscores ("kg", "acme_live").
func NewFormat(prefix string) (Format, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := ValidatePrefix(prefix); err != nil {
		return Format{}, err
	}
	return Format{prefix: prefix + "_"}, nil
}

// ValidatePrefix reports whether prefix can be used as a key prefix.
func ValidatePrefix(prefix string) error {
	if prefix == "" || len(prefix) > MaxPrefixLen {
		return fmt.Errorf("key prefix %q must be 1 to %d characters long", prefix, MaxPrefixLen)
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if c == '_' {
			if i == 0 || i == len(prefix)-1 || prefix[i-1] == '_' {
				return fmt.Errorf("key prefix %q may contain '_' only between letters or digits", prefix)
			}
			continue
		}
		if !isBase62(c) {
			return fmt.Errorf("key prefix %q may contain only A-Z, a-z, 0-9 and '_'", prefix)
		}
	}
	return nil
}

// Prefix returns the prefix without its separator.
func (f Format) Prefix() string { return f.prefix[:len(f.prefix)-1] }

// KeyLen is the exact length of every key of this format.
func (f Format) KeyLen() int { return len(f.prefix) + bodyLen }

// Generate returns a new key and its public id, reading randomness from
// crypto/rand.
func (f Format) Generate() (key, id string, err error) {
	return f.generate(rand.Reader)
}

func (f Format) generate(r io.Reader) (key, id string, err error) {
	buf := make([]byte, f.KeyLen())
	n := copy(buf, f.prefix)
	if err := randomBase62(r, buf[n:n+IDLen]); err != nil {
		return "", "", err
	}
	buf[n+IDLen] = '_'
	secret := buf[n+IDLen+1 : n+IDLen+1+secretLen]
	if err := randomBase62(r, secret); err != nil {
		return "", "", err
	}
	sum := crc32.ChecksumIEEE(buf[:len(buf)-checksumLen])
	encodeChecksum(buf[len(buf)-checksumLen:], sum)
	key = string(buf)
	return key, key[n : n+IDLen], nil
}

// ParsedKey is a key that passed every format check.
type ParsedKey struct {
	// Key is the full key as received; it must never be logged.
	Key string
	// ID is the public key id embedded in the key.
	ID string
}

// Parse checks prefix, length, alphabet, layout and checksum, in that
// order, without allocating. It never looks anything up: a key that fails
// here must not reach a cache or a store.
func (f Format) Parse(key string) (ParsedKey, error) {
	if len(key) != f.KeyLen() {
		return ParsedKey{}, errLength
	}
	if key[:len(f.prefix)] != f.prefix {
		return ParsedKey{}, errPrefix
	}
	body := key[len(f.prefix):]
	for i := 0; i < len(body); i++ {
		c := body[i]
		if i == IDLen {
			if c != '_' {
				return ParsedKey{}, errLayout
			}
			continue
		}
		if !isBase62(c) {
			if c == '_' {
				return ParsedKey{}, errLayout
			}
			return ParsedKey{}, errAlphabet
		}
	}
	head := key[:len(key)-checksumLen]
	sum := crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(head), len(head)))
	var want [checksumLen]byte
	encodeChecksum(want[:], sum)
	if string(want[:]) != key[len(head):] {
		return ParsedKey{}, errChecksum
	}
	return ParsedKey{Key: key, ID: body[:IDLen]}, nil
}

// ValidID reports whether id has the shape of a key id. The CLI and admin
// API use it to reject a mistyped id before asking the store.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isBase62(id[i]) {
			return false
		}
	}
	return true
}

// Hint is what lists and logs may show of a key: the prefix, the public id
// and the last four checksum characters. It is not enough to use the key.
func Hint(key ParsedKey) string {
	return key.Key[:len(key.Key)-secretLen-checksumLen] + "..." + key.Key[len(key.Key)-4:]
}

func isBase62(c byte) bool { return base62Chars[c] }

// base62Chars marks the base62 characters: a table lookup instead of
// three range tests for every character of every key parsed.
var base62Chars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
	}
	return t
}()

// randomBase62 fills dst with uniformly distributed base62 characters.
// Bytes >= 248 (= 4*62) are rejected so that every character is equally
// likely; the loss is about 3% of the random bytes.
func randomBase62(r io.Reader, dst []byte) error {
	var pool [64]byte
	filled := 0
	for filled < len(dst) {
		if _, err := io.ReadFull(r, pool[:]); err != nil {
			return fmt.Errorf("reading random bytes: %w", err)
		}
		for _, b := range pool {
			if b >= 248 {
				continue
			}
			dst[filled] = base62[b%62]
			filled++
			if filled == len(dst) {
				break
			}
		}
	}
	return nil
}

// encodeChecksum writes sum as fixed-width base62, most significant first.
func encodeChecksum(dst []byte, sum uint32) {
	v := uint64(sum)
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62[v%62]
		v /= 62
	}
}
