package caddymodule

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/usage"
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
	// PreviousPeppers and NextPepper rotate the app's pepper (see
	// Handler.PreviousPeppers).
	PreviousPeppers []string `json:"previous_peppers,omitempty"`
	NextPepper      string   `json:"next_pepper,omitempty"`
	// Prefix is the key prefix for every api_key handler that does not
	// set its own. Default: KEYGATE_PREFIX, else "kg".
	Prefix string `json:"prefix,omitempty"`
	// Usage configures usage metering: what each key did, per minute,
	// written to the key store. On by default.
	Usage *UsageConfig `json:"usage,omitempty"`
	// RateLimitKeys bounds the keys whose rate-limit state a gateway
	// holds, per store: about 100 bytes each, taken as keys are used.
	// Keys at rest (whose whole burst is available) are forgotten first,
	// which loses nothing. Default: 1,000,000.
	RateLimitKeys int `json:"rate_limit_keys,omitempty"`

	clock clock.Clock // nil: the system's
	admin *adminHold  // the admin API's store, while this app runs
}

// UsageConfig configures usage metering.
type UsageConfig struct {
	// Off turns usage metering off.
	Off bool `json:"off,omitempty"`
	// FlushInterval is how often counts are written to the store; a
	// process killed outright (SIGKILL, a crash) loses at most this
	// much. Default: 10s.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`
	// Retention is how long usage is kept: gateways delete older minutes
	// every hour. Default: 90 days. Negative keeps usage forever (the
	// Caddyfile's "retention off").
	Retention caddy.Duration `json:"retention,omitempty"`
	// MaxBuffer bounds the rows (one per key and minute) held in memory
	// while they wait to be written, for instance during a store outage.
	// Past it, requests that would need a new row are not counted; they
	// are logged and counted in caddy_api_key_usage_dropped_total.
	// Default: 1,000,000 (about 200 MB at most).
	MaxBuffer int64 `json:"max_buffer,omitempty"`
}

// Usage defaults the usage package does not decide.
const (
	defaultUsageRetention = 90 * 24 * time.Hour
	// usageBatchRetention is how long a written batch is remembered, so
	// that the same batch written again is recognised: longer than any
	// gateway keeps retrying one.
	usageBatchRetention = 30 * 24 * time.Hour
	// usageCloseTimeout bounds the last write when a gateway stops.
	usageCloseTimeout = 15 * time.Second
	// minUsageRetention keeps retention longer than the longest bucket.
	minUsageRetention = 24 * time.Hour
)

// validate checks the settings and fills in defaults.
func (u *UsageConfig) validate() error {
	if u.FlushInterval < 0 || u.FlushInterval > 0 && time.Duration(u.FlushInterval) < 100*time.Millisecond {
		return fmt.Errorf("keygate usage flush_interval must be at least 100ms, got %v", time.Duration(u.FlushInterval))
	}
	if u.Retention > 0 && time.Duration(u.Retention) < minUsageRetention {
		return fmt.Errorf("keygate usage retention must be at least %v (or off), got %v", minUsageRetention, time.Duration(u.Retention))
	}
	if u.MaxBuffer < 0 {
		return fmt.Errorf("keygate usage max_buffer must be positive, got %d", u.MaxBuffer)
	}
	return nil
}

// defaultRateLimitKeys is the default of App.RateLimitKeys.
const defaultRateLimitKeys = 1_000_000

func (a *App) rateLimitKeys() int {
	if a.RateLimitKeys > 0 {
		return a.RateLimitKeys
	}
	return defaultRateLimitKeys
}

// usageSettings is the usage configuration in effect; off is nil.
func (a *App) usageSettings() *UsageConfig {
	u := UsageConfig{}
	if a.Usage != nil {
		u = *a.Usage
	}
	if u.Off {
		return nil
	}
	if u.FlushInterval == 0 {
		u.FlushInterval = caddy.Duration(usage.DefaultFlushInterval)
	}
	if u.Retention == 0 {
		u.Retention = caddy.Duration(defaultUsageRetention)
	}
	if u.MaxBuffer == 0 {
		u.MaxBuffer = usage.DefaultMaxBuffered
	}
	return &u
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
	a.admin = new(adminHold)
	if a.Prefix != "" {
		if err := keystore.ValidatePrefix(a.Prefix); err != nil {
			return fmt.Errorf("keygate prefix: %v", err)
		}
	}
	if a.RateLimitKeys < 0 {
		return fmt.Errorf("keygate rate_limit_keys must be positive, got %d", a.RateLimitKeys)
	}
	if a.Usage != nil {
		return a.Usage.validate()
	}
	return nil
}

// Start makes the app the one the admin API reads its settings from.
// What handlers share is opened when they are provisioned and closed when
// the last one is cleaned up.
func (a *App) Start() error {
	runningApp.Store(a)
	return nil
}

// Stop lets go of the admin API's store; the next configuration's app
// has taken over (or none will).
func (a *App) Stop() error {
	runningApp.CompareAndSwap(a, nil)
	if a.admin != nil {
		a.admin.release()
	}
	return nil
}

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
//			previous_peppers <secret...>
//			next_pepper      <secret>
//			prefix   <prefix>
//			usage off | {
//				flush_interval <duration>
//				retention      <duration> | off
//				max_buffer     <rows>
//			}
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
		case "previous_peppers":
			if a.PreviousPeppers = d.RemainingArgs(); len(a.PreviousPeppers) == 0 {
				return nil, d.Err("keygate previous_peppers needs at least one pepper, e.g. previous_peppers {env.KEYGATE_OLD_PEPPER}")
			}
		case "next_pepper":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			a.NextPepper = v
		case "usage":
			u, err := parseUsage(d)
			if err != nil {
				return nil, err
			}
			a.Usage = u
		case "rate_limit_keys":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, d.Errf("keygate rate_limit_keys must be a positive whole number, got '%s'", v)
			}
			a.RateLimitKeys = n
		default:
			return nil, d.Errf("keygate: unknown setting '%s' (known: database, pepper, previous_peppers, next_pepper, prefix, usage, rate_limit_keys)", name)
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

func parseUsage(d *caddyfile.Dispenser) (*UsageConfig, error) {
	u := &UsageConfig{}
	if d.NextArg() {
		if d.Val() != "off" || d.NextArg() {
			return nil, d.Errf("usage takes 'off' or a block, got '%s'", d.Val())
		}
		u.Off = true
		if d.NextBlock(d.Nesting()) {
			return nil, d.Err("usage off takes no block")
		}
		return u, nil
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("usage: '%s' given more than once", name)
		}
		seen[name] = true
		switch name {
		case "flush_interval":
			v, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			if v == 0 {
				return nil, d.Err("flush_interval must be positive")
			}
			u.FlushInterval = v
		case "retention":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			if v == "off" {
				u.Retention = -1
				break
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("retention must be a positive duration (90d, 2160h) or off, got '%s'", v)
			}
			u.Retention = caddy.Duration(dur)
		case "max_buffer":
			v, err := oneArg(d)
			if err != nil {
				return nil, err
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return nil, d.Errf("max_buffer must be a positive number of rows, got '%s'", v)
			}
			u.MaxBuffer = n
		default:
			return nil, d.Errf("usage: unknown setting '%s' (known: flush_interval, retention, max_buffer)", name)
		}
	}
	if err := u.validate(); err != nil {
		return nil, d.Err(err.Error())
	}
	return u, nil
}
