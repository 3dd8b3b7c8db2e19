package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/adminapi"
	"github.com/keygate/keygate/keystore"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI mounts Keygate's key management API (package adminapi) under
// /api-keys on Caddy's admin endpoint: it is as reachable as that
// endpoint, local only by default. It manages the store of the keygate
// app's settings (the keygate global option, else KEYGATE_DATABASE and
// the pepper's environment variables, else the embedded store): the one
// every api_key handler without its own database uses.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.api_keys",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the API's routes. The store is found at each request,
// from the configuration running then: the admin endpoint outlives
// configurations.
func (AdminAPI) Routes() []caddy.AdminRoute {
	h := &adminapi.Handler{Resolve: resolveAdmin, Logger: caddy.Log().Named("admin.api.api_keys")}
	serve := caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		h.ServeHTTP(w, r)
		return nil
	})
	return []caddy.AdminRoute{{Pattern: adminapi.Prefix, Handler: serve}, {Pattern: adminapi.Prefix + "/", Handler: serve}}
}

// runningApp is the keygate app of the running configuration, set when it
// starts; nil before any has.
var runningApp atomic.Pointer[App]

// adminStores holds the stores the admin API opened: storeKey ->
// *adminStore. Each request holds its store while it runs; the running
// app holds the one it uses until it stops, so that requests do not open
// a store each.
var adminStores = caddy.NewUsagePool()

type adminStore struct{ keystore.Store }

func (s *adminStore) Destruct() error {
	s.Close()
	return nil
}

// adminHold is the store an app keeps open for the admin API.
type adminHold struct {
	mu   sync.Mutex
	key  *storeKey
	done bool
}

// keep holds key's store for the app until release; the first one only.
func (a *adminHold) keep(key storeKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.key != nil || a.done {
		return
	}
	if _, _, err := adminStores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return nil, fmt.Errorf("no store to hold")
	}); err == nil {
		a.key = &key
	}
}

func (a *adminHold) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.done = true
	if a.key != nil {
		adminStores.Delete(*a.key)
		a.key = nil
	}
}

// resolveAdmin opens (or reuses) the running app's store for one request.
func resolveAdmin(ctx context.Context) (*adminapi.Backend, func(), error) {
	app := runningApp.Load()
	settings := app
	if settings == nil {
		settings = &App{}
	}
	dsn, err := storeLocation(settings.Database, "keygate database")
	if err != nil {
		return nil, nil, err
	}
	pepper, err := storePepper(settings.Pepper, "keygate pepper", "", "", dsn, true)
	if err != nil {
		return nil, nil, err
	}
	b := &adminapi.Backend{}
	key := storeKey{dsn: dsn}
	if pepper != nil {
		peppers, err := settings.pepperRotation().peppers(pepper)
		if err != nil {
			return nil, nil, err
		}
		b.Hasher, b.OtherPeppers = peppers.Current, peppers.Others()
		key = newStoreKey(dsn, peppers)
	}
	prefix := settings.Prefix
	if prefix == "" {
		prefix = os.Getenv(envPrefix)
	}
	if b.Format, err = keystore.NewFormat(prefix); err != nil {
		return nil, nil, err
	}
	v, _, err := adminStores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := keystore.Open(ctx, dsn, key.options())
		if err != nil {
			return nil, fmt.Errorf("opening the key store %s: %w", keystore.RedactDSN(dsn), err)
		}
		return &adminStore{s}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	b.Store = v.(*adminStore).Store
	if app != nil && app.admin != nil {
		app.admin.keep(key)
	}
	return b, func() { adminStores.Delete(key) }, nil
}
