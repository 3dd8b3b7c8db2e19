package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// Lookup returns the key with digest d: the request path's one query, on
// the database itself (see sqlstore.Store), with an unnamed parameter,
// which SQLite binds without naming it.
func (s *store) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	k, err := scanKey(s.db.QueryRowContext(ctx, keystore.KeySelect+" WHERE k.digest = ?", d[:]))
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("looking up key: %w", err)
	}
	return k, err
}
