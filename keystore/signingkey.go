package keystore

import (
	"context"
	"errors"
	"time"

	"github.com/keygate/keygate/audit"
)

// SigningKey is a key pair that gateways sign identity tokens with (see
// package signing), as a store keeps it: the private key only sealed
// (AES-256-GCM under a key derived from the pepper), never in plaintext.
type SigningKey struct {
	// KID identifies the key in tokens' headers and in the JWKS.
	KID string `json:"kid"`
	// Algorithm is the JOSE algorithm the key signs with ("EdDSA").
	Algorithm string `json:"alg"`
	// PublicKey is the public key, raw (32 bytes for Ed25519).
	PublicKey []byte `json:"public_key"`
	// SealedPrivateKey is the private key sealed by package signing; it
	// is never encoded (audit events, JSON output).
	SealedPrivateKey []byte `json:"-"`
	// CreatedAt is when the key was made; ActivatedAt when it became the
	// key gateways sign with.
	CreatedAt   time.Time `json:"created_at"`
	ActivatedAt time.Time `json:"activated_at"`
	// RetiresAt is zero for the key gateways sign with. A key replaced by
	// a rotation signs no more and is published until RetiresAt, so that
	// tokens signed before the rotation keep verifying until they expire.
	RetiresAt time.Time `json:"retires_at,omitzero"`
}

// Published reports whether k is in the JWKS at t: current, or retiring
// after t.
func (k *SigningKey) Published(t time.Time) bool {
	return k.RetiresAt.IsZero() || k.RetiresAt.After(t)
}

// ErrNoSigningKey: the store holds no current signing key of the
// algorithm asked for.
var ErrNoSigningKey = errors.New("no signing key in the key store")

// SigningKeys keeps the key pairs gateways sign identity tokens with,
// shared by every gateway on the store. At most one key per algorithm is
// current (RetiresAt zero); the store enforces it with a unique index, so
// gateways that start at once on an empty table agree on one key.
type SigningKeys interface {
	// SigningKeys returns the keys published at t (current, or retiring
	// after t), newest first; all keys, retired ones too, if all is set.
	SigningKeys(ctx context.Context, t time.Time, all bool) ([]*SigningKey, error)
	// EnsureSigningKey stores k as the current key of its algorithm
	// unless there is one, and returns the current key (k, or the one
	// another process stored first). When k is stored, e (if not nil) is
	// appended to the audit chain in the same transaction.
	EnsureSigningKey(ctx context.Context, k *SigningKey, e *audit.Event) (*SigningKey, error)
	// RotateSigningKey makes k the current key of its algorithm: the
	// current one, if any, retires at retireAt. The event event returns
	// for the previous key (nil if none) is appended to the audit chain
	// in the same transaction. It returns the previous key.
	RotateSigningKey(ctx context.Context, k *SigningKey, retireAt time.Time, event func(prev *SigningKey) *audit.Event) (*SigningKey, error)
}
