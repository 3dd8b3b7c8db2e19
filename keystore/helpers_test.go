package keystore

import (
	"context"
	"time"
)

// testActor is the actor of the changes tests make.
const testActor = "test"

// issueKey creates a key through the lifecycle service.
func issueKey(ctx context.Context, s Store, f Format, h *Hasher, p NewKeyParams) (string, *Key, error) {
	return (&Lifecycle{Store: s, Format: f, Hasher: h}).Create(ctx, testActor, p)
}

// insertKey stores k as it is, with no audit event: for tests of the
// store's own checks.
func insertKey(ctx context.Context, s Store, k *Key) error {
	return s.Change(ctx, func(tx Tx) error { return tx.Insert(ctx, k) })
}

// revokeAt revokes the key with id at a given time, with no audit event.
func revokeAt(ctx context.Context, s Store, id string, at time.Time) (k *Key, changed bool, err error) {
	err = s.Change(ctx, func(tx Tx) error {
		k, changed, err = tx.Revoke(ctx, id, at)
		return err
	})
	return k, changed, err
}
