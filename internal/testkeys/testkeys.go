// Package testkeys makes and revokes keys for tests, through the same
// lifecycle service the CLI uses, recorded with the actor "test".
package testkeys

import (
	"context"

	"github.com/keygate/keygate/keystore"
)

// Actor is the actor of every change made here.
const Actor = "test"

// Issue creates a key with p.
func Issue(ctx context.Context, s keystore.Store, f keystore.Format, h *keystore.Hasher, p keystore.NewKeyParams) (string, *keystore.Key, error) {
	return (&keystore.Lifecycle{Store: s, Format: f, Hasher: h}).Create(ctx, Actor, p)
}

// Revoke revokes the key with id.
func Revoke(ctx context.Context, s keystore.Store, id string) (*keystore.Key, bool, error) {
	return (&keystore.Lifecycle{Store: s}).Revoke(ctx, Actor, id)
}
