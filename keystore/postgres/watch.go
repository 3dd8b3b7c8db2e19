package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore"
)

// listenPing is how long the listener waits for a notification before it
// checks that its connection is alive: a connection that died without a
// word (a network partition) would otherwise wait forever. A variable so
// that tests can shorten it.
var listenPing = 5 * time.Second

// notifyChannel is the channel the key trigger notifies on.
const notifyChannel = "keygate_keys"

// Watch delivers key changes to h until ctx ends: LISTEN/NOTIFY on a
// connection of its own, never returned to the pool. After every
// (re)connection it asks h to Resync, because notifications sent while
// nobody listened are lost.
func (s *store) Watch(ctx context.Context, h keystore.ChangeHandler) error {
	return keystore.WatchLoop(ctx, h, s.listenSession)
}

func (s *store) listenSession(ctx context.Context, h keystore.ChangeHandler) error {
	connectCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, s.pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return fmt.Errorf("connecting key change listener: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return fmt.Errorf("listening for key changes: %w", err)
	}
	// Listening now; anything that changed before is covered by a resync.
	h.Resync()
	h.Healthy(true, nil)
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			if b, err := hex.DecodeString(n.Payload); err == nil && len(b) == keystore.DigestLen {
				h.KeyChanged(keystore.Digest(b))
			} else {
				h.MalformedChange()
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("key change listener connection lost: %w", err)
			}
		default:
			return fmt.Errorf("key change listener connection lost: %w", err)
		}
	}
}
