// Package signing makes the signed identity tokens (JWT) a gateway sends
// the upstream beside its plain identity headers: the Ed25519 key pairs
// they are signed with (kept in the key store, private keys sealed under a
// key derived from the pepper, rotated with an overlap), the Keyring that
// gives each gateway the current key and keeps up with rotations, the
// Issuer that signs and caches each key's token, and the public JWKS an
// upstream verifies tokens with. It does not import Caddy.
package signing

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/keystore"
)

// Algorithm is the JOSE algorithm of every signing key.
const Algorithm = "EdDSA"

// sealLabel names the pepper-derived key private keys are sealed with.
// Its spaces are outside the key alphabet, so the derived key is never a
// key's digest (see keystore.Hasher.DeriveKey).
const sealLabel = "keygate signing-key encryption v1"

// Timing of a rotation.
const (
	// MaxLifetime is the longest token lifetime a gateway accepts.
	MaxLifetime = time.Hour
	// MaxRefresh is the longest interval at which a gateway looks for a
	// rotated key.
	MaxRefresh = 5 * time.Minute
	// RetireAfter is how long a replaced key stays in the JWKS after its
	// successor became the signing key: a gateway may sign with the old key
	// until it notices (MaxRefresh), and its tokens live up to MaxLifetime;
	// the rest is a margin for clocks.
	RetireAfter = MaxLifetime + MaxRefresh + 5*time.Minute
	// DefaultActivateIn is how long a rotated key is published before
	// gateways sign with it, so that upstreams whose JWKS client refetches
	// at most every 30s (jose's cooldown) or on a schedule have it first.
	DefaultActivateIn = time.Minute
)

// Sealer seals and opens private keys with AES-256-GCM under a key
// derived from the pepper: a dump of the store without the pepper reveals
// no private key, and a process with another pepper cannot open them.
type Sealer struct{ aead cipher.AEAD }

// NewSealer returns the sealer of h's pepper.
func NewSealer(h *keystore.Hasher) (*Sealer, error) {
	if h == nil {
		return nil, errors.New("signing keys need the pepper")
	}
	k := h.DeriveKey(sealLabel)
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// aad binds a sealed key to its row: a sealed key copied to another kid
// does not open.
func aad(kid, alg string) []byte { return []byte(kid + "\x00" + alg) }

// seal returns nonce || ciphertext of the private key's seed.
func (s *Sealer) seal(kid, alg string, priv ed25519.PrivateKey) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+ed25519.SeedSize+s.aead.Overhead())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, priv.Seed(), aad(kid, alg))
}

// Open returns the private key of k, checking it matches k's public key.
func (s *Sealer) Open(k *keystore.SigningKey) (ed25519.PrivateKey, error) {
	if k.Algorithm != Algorithm {
		return nil, fmt.Errorf("signing key %s: unsupported algorithm %q", k.KID, k.Algorithm)
	}
	n := s.aead.NonceSize()
	if len(k.SealedPrivateKey) < n {
		return nil, fmt.Errorf("signing key %s: sealed private key too short", k.KID)
	}
	seed, err := s.aead.Open(nil, k.SealedPrivateKey[:n], k.SealedPrivateKey[n:], aad(k.KID, k.Algorithm))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key %s does not open with this pepper: "+
			"every gateway and CLI on the store must use the same pepper", k.KID)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if !priv.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(k.PublicKey)) {
		return nil, fmt.Errorf("signing key %s: private key does not match the public key", k.KID)
	}
	return priv, nil
}

// NewKey makes a new Ed25519 key pair, sealed, that activates at
// activate.
func (s *Sealer) NewKey(created, activate time.Time) (*keystore.SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var id [12]byte
	rand.Read(id[:])
	kid := "kg-" + created.UTC().Format("20060102") + "-" + base64.RawURLEncoding.EncodeToString(id[:])
	return &keystore.SigningKey{
		KID:              kid,
		Algorithm:        Algorithm,
		PublicKey:        pub,
		SealedPrivateKey: s.seal(kid, Algorithm, priv),
		CreatedAt:        created.UTC().Truncate(time.Microsecond),
		ActivatedAt:      activate.UTC().Truncate(time.Microsecond),
	}, nil
}

// EnsureActor is the audit actor of the first key a gateway creates.
const EnsureActor = "gateway"

// Ensure makes sure the store has a current signing key, creating one
// (recorded in the audit trail) if it has none, and returns it. Gateways
// that start at once on an empty table agree on one key.
func Ensure(ctx context.Context, st keystore.SigningKeys, s *Sealer, now time.Time) (*keystore.SigningKey, error) {
	k, err := s.NewKey(now, now)
	if err != nil {
		return nil, err
	}
	e := &audit.Event{Time: k.CreatedAt, Actor: EnsureActor, Action: audit.ActionSigningKeyCreate, KeyID: k.KID, After: publicJSON(k)}
	return st.EnsureSigningKey(ctx, k, e)
}

// Rotate makes a new signing key that gateways sign with from
// now+activateIn on; the current one keeps signing until then and is
// published until RetireAfter later. The rotation is recorded in the
// audit trail under actor. It returns the new key and the one it
// replaced (nil if there was none).
func Rotate(ctx context.Context, st keystore.SigningKeys, s *Sealer, actor string, now time.Time, activateIn time.Duration) (next, prev *keystore.SigningKey, err error) {
	if err := keystore.ValidateActor(actor); err != nil {
		return nil, nil, err
	}
	if activateIn < 0 || activateIn > MaxLifetime {
		return nil, nil, fmt.Errorf("activation delay %s is not between 0 and %s", activateIn, MaxLifetime)
	}
	now = now.UTC().Truncate(time.Microsecond)
	if next, err = s.NewKey(now, now.Add(activateIn)); err != nil {
		return nil, nil, err
	}
	// Current keys are checked to open with this pepper first: a CLI with
	// the wrong pepper must not make a key no gateway can sign with.
	current, err := st.SigningKeys(ctx, now, false)
	if err != nil {
		return nil, nil, err
	}
	for _, k := range current {
		if _, err := s.Open(k); err != nil {
			return nil, nil, err
		}
	}
	retire := next.ActivatedAt.Add(RetireAfter)
	prev, err = st.RotateSigningKey(ctx, next, retire, func(prev *keystore.SigningKey) *audit.Event {
		e := &audit.Event{Time: now, Actor: actor, Action: audit.ActionSigningKeyRotate, KeyID: next.KID, After: publicJSON(next)}
		if prev != nil {
			e.Before = publicJSON(prev)
		}
		return e
	})
	return next, prev, err
}

// publicJSON is what an audit event keeps of a signing key: its
// SigningKey JSON, which has no private key.
func publicJSON(k *keystore.SigningKey) string {
	b, _ := json.Marshal(k)
	return string(b)
}
