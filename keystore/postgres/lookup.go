package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// Lookup returns the key with digest d: the request path's one query, on
// the pool itself (see sqlstore.Store).
func (s *store) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	if err := s.Ready(ctx); err != nil {
		return nil, err
	}
	const q = keystore.KeySelect + " WHERE k.digest = $1"
	k, err := scanKey(s.pool.QueryRow(ctx, q, d[:]))
	// A pooled connection the server ended (a restart, an administrator's
	// pg_terminate_backend) fails at once. One such failure is retried on
	// another connection; a second one means the server ended many
	// sessions, and the pool (which pings only connections idle for a
	// second) may hold more of them, so it is emptied before a last try.
	// The query only reads; repeating it is safe.
	if err != nil && retryable(ctx, err) {
		k, err = scanKey(s.pool.QueryRow(ctx, q, d[:]))
		if err != nil && retryable(ctx, err) {
			s.pool.Reset()
			k, err = scanKey(s.pool.QueryRow(ctx, q, d[:]))
		}
	}
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, fmt.Errorf("looking up key: %w", err)
	}
	return k, err
}
