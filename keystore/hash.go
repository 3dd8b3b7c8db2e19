package keystore

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// DigestLen is the length of a key digest in bytes.
const DigestLen = sha256.Size

// Digest identifies a key in stores and caches: HMAC-SHA-256 of the whole
// key string under the pepper.
type Digest [DigestLen]byte

// MinPepperLen is the fewest random bytes a pepper must encode (see
// ValidatePepper). A pepper is a server secret; 32 bytes matches the
// strength of HMAC-SHA-256.
const MinPepperLen = 32

// Hasher computes key digests with one pepper. It is safe for concurrent
// use and does not allocate per call once warm.
type Hasher struct {
	pool  sync.Pool // of *hashState
	check Digest    // digest of pepperCheckInput, see PepperCheck
}

// pepperCheckInput cannot be a key: it contains characters outside the key
// alphabet.
const pepperCheckInput = "keygate pepper check v1"

// NewHasher returns a Hasher for pepper, which must pass ValidatePepper.
// The HMAC key is pepper exactly as given, not its decoded form, so that
// digests made before peppers were validated keep matching. It copies
// the pepper.
func NewHasher(pepper []byte) (*Hasher, error) {
	if err := ValidatePepper(pepper); err != nil {
		return nil, err
	}
	p := append([]byte(nil), pepper...)
	h := &Hasher{}
	h.pool.New = func() any { return &hashState{mac: hmac.New(sha256.New, p)} }
	h.check = h.digest(pepperCheckInput)
	return h, nil
}

// Digest returns the digest of a parsed key.
func (h *Hasher) Digest(key ParsedKey) Digest {
	return h.digest(key.Key)
}

// hashState is pooled whole: buffers passed through the hash.Hash
// interface escape, so keeping them beside the HMAC saves two allocations
// per digest.
type hashState struct {
	mac hash.Hash
	buf [128]byte
	sum [DigestLen]byte
}

func (h *Hasher) digest(s string) Digest {
	st := h.pool.Get().(*hashState)
	st.mac.Reset()
	// The HMAC has no WriteString; copy through the buffer in chunks.
	for len(s) > 0 {
		n := copy(st.buf[:], s)
		st.mac.Write(st.buf[:n])
		s = s[n:]
	}
	d := Digest(st.mac.Sum(st.sum[:0]))
	h.pool.Put(st)
	return d
}

// PepperCheck is a value derived from the pepper that a store keeps so
// that a process with a different pepper (a CLI run with the wrong
// --pepper, say) is refused instead of silently issuing keys no gateway
// accepts. It reveals nothing about the pepper or any key.
func (h *Hasher) PepperCheck() Digest { return h.check }

// Equal compares two digests in constant time.
func (d Digest) Equal(o Digest) bool { return hmac.Equal(d[:], o[:]) }

// DeriveKey returns a 256-bit key for another use of the pepper:
// HMAC-SHA-256(pepper, label). A label must contain a character outside
// the key alphabet (a space will do), so that a derived key can never
// equal the digest of a key, which a store dump shows.
func (h *Hasher) DeriveKey(label string) [32]byte {
	return h.digest(label)
}

// ID names the pepper without revealing it: the first 8 bytes of its
// check value (see PepperCheck), hex encoded. Stores record it with each
// key so that `caddy api-key pepper-status` can count the keys still
// hashed with each pepper during a rotation.
func (h *Hasher) ID() string { return PepperID(h.check) }

// PepperID is the id of the pepper whose check value is check.
func PepperID(check Digest) string { return hex.EncodeToString(check[:8]) }
