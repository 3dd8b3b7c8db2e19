package signing

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keygate/keygate/keystore"
)

// DefaultRefresh is how often a gateway reads the signing keys to pick up
// a rotation: a rotated key signs at every gateway within this of its
// activation.
const DefaultRefresh = 30 * time.Second

// Keyring is a gateway's view of the store's signing keys: the key it
// signs with now, opened. Many issuers share one; it is safe for
// concurrent use, and Signer takes no lock.
type Keyring struct {
	store  keystore.SigningKeys
	sealer *Sealer
	now    func() time.Time

	current atomic.Pointer[Signer]
}

// Signer is a signing key, opened, ready to sign tokens.
type Signer struct {
	KID    string
	signer jose.Signer
}

// NewKeyring returns the keyring of a store; now is its clock (nil: the
// system's). It holds no key until Refresh.
func NewKeyring(st keystore.SigningKeys, s *Sealer, now func() time.Time) *Keyring {
	if now == nil {
		now = time.Now
	}
	return &Keyring{store: st, sealer: s, now: now}
}

// ErrNoSigner: the keyring has no key yet (the store could not be read).
var ErrNoSigner = errors.New("no signing key loaded yet")

// Signer returns the key to sign with, or nil before the first Refresh
// that succeeded.
func (r *Keyring) Signer() *Signer { return r.current.Load() }

// Refresh reads the published keys, creating the first one if the store
// has none, and makes the newest key whose activation has come the
// signer (the oldest published one while none has).
func (r *Keyring) Refresh(ctx context.Context) error {
	now := r.now()
	keys, err := r.store.SigningKeys(ctx, now, false)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		if _, err := Ensure(ctx, r.store, r.sealer, now); err != nil {
			if keystore.PermissionDenied(err) {
				return fmt.Errorf("the store has no signing key and this database role may not create one: "+
					"create the first signing key with `caddy api-key signing-key rotate` as the management role: %w", err)
			}
			return err
		}
		if keys, err = r.store.SigningKeys(ctx, now, false); err != nil {
			return err
		}
		if len(keys) == 0 {
			return keystore.ErrNoSigningKey
		}
	}
	k := Pick(keys, now)
	if cur := r.current.Load(); cur != nil && cur.KID == k.KID {
		return nil
	}
	priv, err := r.sealer.Open(k)
	if err != nil {
		return err
	}
	signer, err := newSigner(k.KID, priv)
	if err != nil {
		return err
	}
	r.current.Store(signer)
	return nil
}

// Pick returns the key gateways sign with at now among published keys:
// the current key once its activation has come; before that, the key it
// replaced (of the keys whose activation has come, the one replaced
// last); the current key if none has come.
func Pick(keys []*keystore.SigningKey, now time.Time) *keystore.SigningKey {
	var current, replaced *keystore.SigningKey
	for _, k := range keys {
		switch {
		case k.RetiresAt.IsZero():
			current = k
		case k.ActivatedAt.After(now):
			// replaced before it ever signed
		case replaced == nil || k.RetiresAt.After(replaced.RetiresAt):
			replaced = k
		}
	}
	switch {
	case current != nil && (!current.ActivatedAt.After(now) || replaced == nil):
		return current
	case replaced != nil:
		return replaced
	}
	return keys[0]
}

func newSigner(kid string, priv ed25519.PrivateKey) (*Signer, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: Algorithm}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", kid, err)
	}
	return &Signer{KID: kid, signer: s}, nil
}

// Run refreshes the keyring every interval until ctx ends, calling
// report with each refresh's error (nil once it succeeds after failing).
func (r *Keyring) Run(ctx context.Context, every time.Duration, report func(error)) {
	failing := false
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := r.Refresh(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil || failing {
			report(err)
		}
		failing = err != nil
	}
}

// JWKS returns the JSON Web Key Set of the signing keys of s published at
// at: the current key, a rotated key not yet signing, and replaced keys
// until they retire. It holds public keys only.
func JWKS(ctx context.Context, s keystore.SigningKeys, at time.Time) ([]byte, error) {
	keys, err := s.SigningKeys(ctx, at, false)
	if err != nil {
		return nil, err
	}
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		if k.Algorithm != Algorithm || len(k.PublicKey) != ed25519.PublicKeySize {
			continue
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: ed25519.PublicKey(k.PublicKey), KeyID: k.KID, Algorithm: k.Algorithm, Use: "sig"})
	}
	return json.Marshal(set)
}
