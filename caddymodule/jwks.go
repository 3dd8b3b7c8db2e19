package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/signing"
)

func init() {
	caddy.RegisterModule(JWKSHandler{})
	httpcaddyfile.RegisterHandlerDirective("api_key_jwks", parseJWKSCaddyfile)
	// Its order is registered beside api_key's (handler.go): before it.
}

// JWKSHandler serves the public JSON Web Key Set of the key store's
// signing keys, which upstreams verify identity_jwt tokens with: the
// current key, a rotated key not yet signing, and replaced keys until
// they retire. It needs no API key and no pepper, and answers every
// request it gets, so give it a path matcher.
type JWKSHandler struct {
	// Database names the key store, as the api_key directive's database
	// does. Default: the keygate global option's, else KEYGATE_DATABASE,
	// else the embedded store.
	Database string `json:"database,omitempty"`
	// MaxAge is the Cache-Control max-age of the answer. Default: 15s.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	logger   *zap.Logger
	store    *sharedStore
	storeKey storeKey

	control string
	memo    *jwksMemoState
}

// jwksMemoState is the last document read and when.
type jwksMemoState struct {
	mu     sync.Mutex
	doc    []byte
	readAt time.Time
}

const (
	defaultJWKSMaxAge = 15 * time.Second
	// jwksMemo is how long the handler answers from its last read of the
	// store: a public endpoint must not put a query on every request.
	jwksMemo = time.Second
)

// CaddyModule returns the Caddy module information.
func (JWKSHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.api_key_jwks",
		New: func() caddy.Module { return new(JWKSHandler) },
	}
}

// Provision opens the key store (shared with handlers on the same store).
func (j *JWKSHandler) Provision(ctx caddy.Context) error {
	j.logger = ctx.Logger()
	j.memo = new(jwksMemoState)
	if j.MaxAge < 0 {
		return fmt.Errorf("max_age must not be negative")
	}
	maxAge := time.Duration(j.MaxAge)
	if j.MaxAge == 0 {
		maxAge = defaultJWKSMaxAge
	}
	j.control = "public, max-age=" + strconv.Itoa(int(maxAge/time.Second))
	app, err := keygateApp(ctx)
	if err != nil {
		return err
	}
	database, databaseAs := j.Database, "database"
	if database == "" && app.Database != "" {
		database, databaseAs = app.Database, "keygate database"
	}
	dsn, err := storeLocation(database, databaseAs)
	if err != nil {
		return err
	}
	if caddyValidating() {
		return nil
	}
	openCtx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	j.storeKey = storeKey{dsn: dsn} // public keys only: no pepper needed
	st, err := app.acquireStore(openCtx, j.storeKey)
	if err != nil {
		return fmt.Errorf("opening key store %s: %w", keystore.RedactDSN(dsn), err)
	}
	j.store = st
	return nil
}

// ServeHTTP answers with the JWKS, or 503 when the store cannot be read.
func (j *JWKSHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("the JWKS is read with GET"))
	}
	doc, err := j.document(r.Context())
	if err != nil {
		j.logger.Warn("could not read the signing keys for the JWKS", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return caddyhttp.Error(http.StatusServiceUnavailable, err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", j.control)
	h.Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, err = w.Write(doc)
	}
	return err
}

func (j *JWKSHandler) document(ctx context.Context) ([]byte, error) {
	m := j.memo
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if m.doc != nil && now.Sub(m.readAt) < jwksMemo {
		return m.doc, nil
	}
	ctx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	doc, err := signing.JWKS(ctx, j.store, now)
	if err != nil {
		return nil, err
	}
	m.doc, m.readAt = doc, now
	return doc, nil
}

// Cleanup lets go of the store.
func (j *JWKSHandler) Cleanup() error {
	if j.store == nil {
		return nil
	}
	j.store = nil
	_, err := stores.Delete(j.storeKey)
	return err
}

func parseJWKSCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var j JWKSHandler
	err := j.UnmarshalCaddyfile(h.Dispenser)
	return &j, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	api_key_jwks [<matcher>] {
//		database <dsn>
//		max_age  <duration>
//	}
//
// Both are optional. Give it a path matcher: it answers every request
// it gets, e.g. api_key_jwks /.well-known/jwks.json
func (j *JWKSHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.Errf("api_key_jwks takes no arguments, got '%s'; options go in a block", d.Val())
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		if seen[name] {
			return d.Errf("subdirective '%s' given more than once", name)
		}
		seen[name] = true
		switch name {
		case "database":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			j.Database = v
		case "max_age":
			dur, err := durationArg(d)
			if err != nil {
				return err
			}
			j.MaxAge = dur
		default:
			return d.Errf("unrecognized subdirective '%s'", name)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*JWKSHandler)(nil)
	_ caddy.CleanerUpper          = (*JWKSHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*JWKSHandler)(nil)
	_ caddyfile.Unmarshaler       = (*JWKSHandler)(nil)
)
