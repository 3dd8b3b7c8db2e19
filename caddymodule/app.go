package caddymodule

import (
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/keygate/keygate/keystore"
)

func init() {
	caddy.RegisterModule(App{})
	httpcaddyfile.RegisterGlobalOption("keygate", parseGlobalOption)
}

// App is the Keygate app (apps.keygate): what every api_key handler of a
// configuration shares. It holds the settings that apply to every site
// (each api_key handler's own options override them) and hands handlers
// their stores and caches. Apps are made anew with every configuration;
// stores, caches and what they hold outlive a reload in usage pools that
// only the app reaches into, so that a reload neither reconnects nor
// empties a cache.
//
// A configuration without a keygate app gets an empty one, made when the
// first handler asks for it.
type App struct {
	// Database is the key store DSN for every api_key handler that does
	// not name its own (see Handler.Database). Default: KEYGATE_DATABASE,
	// else the embedded store.
	Database string `json:"database,omitempty"`
	// Pepper is the pepper for every api_key handler that does not set
	// its own (see Handler.Pepper). Default: KEYGATE_PEPPER_FILE or
	// KEYGATE_PEPPER, else, for the embedded store, the pepper file
	// beside it.
	Pepper string `json:"pepper,omitempty"`
	// Prefix is the key prefix for every api_key handler that does not
	// set its own. Default: KEYGATE_PREFIX, else "kg".
	Prefix string `json:"prefix,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "keygate",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the settings that need no outside resource.
func (a *App) Provision(caddy.Context) error {
	if a.Prefix != "" {
		if err := keystore.ValidatePrefix(a.Prefix); err != nil {
			return fmt.Errorf("keygate prefix: %v", err)
		}
	}
	return nil
}

// Start and Stop have nothing to do: what the app shares is opened when
// handlers are provisioned and closed when the last one is cleaned up.
func (a *App) Start() error { return nil }
func (a *App) Stop() error  { return nil }

// keygateApp returns the configuration's Keygate app, an empty one if it
// has none.
func keygateApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("keygate")
	if err != nil {
		return nil, err
	}
	return v.(*App), nil
}

// parseGlobalOption reads the keygate global option:
//
//	{
//		keygate {
//			database <dsn>
//			pepper   <secret>
//			prefix   <prefix>
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	var a App
	d.Next() // the option's name
	if existing != nil {
		return nil, d.Err("keygate is given more than once: put every setting in one keygate block")
	}
	if d.NextArg() {
		return nil, d.Errf("keygate takes no arguments on its first line, got '%s'; settings go in a block", d.Val())
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("keygate: '%s' given more than once", name)
		}
		seen[name] = true
		switch name {
		case "database", "pepper", "prefix":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			switch name {
			case "database":
				a.Database = v
			case "pepper":
				a.Pepper = v
			case "prefix":
				if err := keystore.ValidatePrefix(v); err != nil {
					return nil, d.Errf("keygate prefix: %v", err)
				}
				a.Prefix = v
			}
		default:
			return nil, d.Errf("keygate: unknown setting '%s' (known: database, pepper, prefix)", name)
		}
	}
	raw, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "keygate", Value: raw}, nil
}

var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
