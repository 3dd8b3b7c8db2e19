package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/signing"
)

// keyrings holds the signing keyrings of identity_jwt: one per store and
// refresh interval, shared by every handler on the store and kept across
// reloads, each reading the signing keys every refresh.
var keyrings = caddy.NewUsagePool() // keyringKey -> *sharedKeyring

type keyringKey struct {
	store   storeKey
	refresh time.Duration
}

// sharedKeyring is a keyring, the store it reads (it holds a reference of
// its own) and its refresh loop.
type sharedKeyring struct {
	*signing.Keyring
	storeKey storeKey
	stop     context.CancelFunc
	done     chan struct{}
}

// acquireKeyring returns the keyring of store, loading its signing key
// (creating the first one if the store has none) if no handler holds it.
// A store that cannot be read now only delays the key: the refresh loop
// tries again. Each successful call must be matched by one
// releaseKeyring.
func (*App) acquireKeyring(ctx context.Context, store storeKey, h *keystore.Hasher, refresh time.Duration) (*sharedKeyring, keyringKey, error) {
	key := keyringKey{store: store, refresh: refresh}
	val, _, err := keyrings.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, _, err := stores.LoadOrNew(store, func() (caddy.Destructor, error) {
			return nil, errors.New("the key store is not open") // the verifier opened it
		})
		if err != nil {
			return nil, err
		}
		sealer, err := signing.NewSealer(h)
		if err != nil {
			stores.Delete(store)
			return nil, err
		}
		logger := caddy.Log().Named("http.handlers.api_key").With(zap.String("database", keystore.RedactDSN(store.dsn)))
		ring := signing.NewKeyring(st.(*sharedStore).Store, sealer, nil)
		// A role that may not create the first signing key stays refused
		// until someone else creates it: say so once, not every refresh.
		denied := false
		if err := ring.Refresh(ctx); err != nil {
			denied = keystore.PermissionDenied(err)
			logger.Warn("identity_jwt: the signing key could not be loaded; requests get 503 until it is", zap.Error(err))
		}
		lctx, stop := context.WithCancel(context.Background())
		sk := &sharedKeyring{Keyring: ring, storeKey: store, stop: stop, done: make(chan struct{})}
		go func() {
			defer close(sk.done)
			ring.Run(lctx, refresh, func(err error) {
				wasDenied := denied
				denied = keystore.PermissionDenied(err)
				switch {
				case denied && wasDenied:
				case err != nil:
					logger.Warn("identity_jwt: could not read the signing keys; signing with the last one loaded", zap.Error(err))
				default:
					logger.Info("identity_jwt: signing keys read again")
				}
			})
		}()
		return sk, nil
	})
	if err != nil {
		return nil, key, err
	}
	return val.(*sharedKeyring), key, nil
}

func releaseKeyring(key keyringKey) error {
	_, err := keyrings.Delete(key)
	return err
}

// Destruct stops the refresh loop and lets go of the store.
func (k *sharedKeyring) Destruct() error {
	k.stop()
	<-k.done
	_, err := stores.Delete(k.storeKey)
	return err
}
