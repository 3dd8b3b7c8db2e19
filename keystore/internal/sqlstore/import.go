package sqlstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/keystore"
)

func (t tx) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	k, err := t.s.d.ScanKey(t.q.QueryRow(ctx, keystore.KeySelect+" WHERE k.digest = $1", d[:]))
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("looking up a key by digest: %w", err)
	}
	return k, err
}
