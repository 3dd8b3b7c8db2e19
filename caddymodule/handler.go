// Package caddymodule is Keygate's Caddy glue: the api_key HTTP handler,
// its Caddyfile syntax, the `caddy api-key` command and metrics. The logic
// lives in keystore (keys and stores) and cache (verification); this
// package wires them to Caddy's lifecycle and to HTTP.
package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/signing"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("api_key", parseCaddyfile)
	// The public JWKS (jwks.go) is served before keys are required:
	// registered first, it lands before api_key, which is inserted
	// between it and basic_auth.
	httpcaddyfile.RegisterDirectiveOrder("api_key_jwks", httpcaddyfile.Before, "basic_auth")
	// Authentication comes before anything that spends effort on a
	// request, including rate_limit plugins ordered near basic_auth.
	httpcaddyfile.RegisterDirectiveOrder("api_key", httpcaddyfile.Before, "basic_auth")
}

// Handler requires a valid API key on every request it sees. It looks the
// key up (through an in-process cache) in a PostgreSQL or embedded SQLite
// key store, rejects missing, malformed, unknown, revoked and expired keys
// with 401, keys without the required scopes with 403, and answers 503
// when the store cannot be asked. Accepted requests continue without the
// key and with trusted identity headers instead, or, with auth_server,
// are answered 200 with the identity in response headers.
type Handler struct {
	// Database names the key store: "postgres://…" (or "postgresql://…")
	// for PostgreSQL, "sqlite:/path/to/keys.db" for the embedded store.
	// Placeholders such as {env.KEYGATE_DATABASE} are replaced at start.
	// Default: sqlite:<Caddy data directory>/keygate/keys.db.
	Database string `json:"database,omitempty"`

	// Pepper is the server secret keys are hashed with (HMAC-SHA-256): at
	// least 32 random bytes, hex or base64 encoded (openssl rand -hex 32);
	// passphrases and repetitive values are refused. Use a placeholder such
	// as {env.KEYGATE_PEPPER} or
	// {file./etc/keygate/pepper} rather than the secret itself. Required
	// with PostgreSQL; with the embedded store and no pepper, one is
	// generated on first start into the file <database path>.pepper
	// (mode 0600). Every gateway and CLI using the same store must use the
	// same pepper.
	Pepper string `json:"pepper,omitempty"`
	// PreviousPeppers and NextPepper rotate the pepper (given like
	// Pepper; see docs/operations.md). A key made with a previous pepper
	// still works and is re-hashed with Pepper at its first successful
	// use; a key made with the next pepper works and is left as it is.
	// They belong with the Pepper they are given beside: a handler
	// without its own Pepper takes the keygate app's.
	PreviousPeppers []string `json:"previous_peppers,omitempty"`
	NextPepper      string   `json:"next_pepper,omitempty"`

	// Prefix of the keys this gateway accepts. Default: "kg".
	Prefix string `json:"prefix,omitempty"`

	// Sources lists where to look for the key, in order; the first source
	// that holds a value is used. Default: bearer only (Authorization:
	// Bearer), the one source Caddy's request logs redact by themselves;
	// for a header or query source, log with the redact_api_keys encoder.
	Sources []KeySource `json:"sources,omitempty"`

	// Scopes the key must grant (all of them). Default: none.
	Scopes []string `json:"scopes,omitempty"`

	// IDHeader is the request header that tells the upstream which key
	// was used; "-" or "off" disables it. A client-sent header of this name is
	// always removed. Default: X-Api-Key-Id.
	IDHeader string `json:"id_header,omitempty"`

	// OwnerHeader carries the key's owner to the upstream; "-" or "off"
	// disables it. A client-sent header of this name is always removed. Default:
	// X-Api-Key-Owner.
	OwnerHeader string `json:"owner_header,omitempty"`

	// Realm is the realm in WWW-Authenticate challenges. Default: "api".
	Realm string `json:"realm,omitempty"`

	// HandleErrors, if true, returns errors to Caddy instead of writing
	// problem+json bodies, so that the site's handle_errors routes render
	// them ({http.error.status_code}, {api_key.error}). Default: false.
	HandleErrors bool `json:"handle_errors,omitempty"`

	// AuthServer makes the handler the authentication service of another
	// proxy (Caddy's forward_auth, nginx auth_request, Traefik
	// ForwardAuth, Envoy ext_authz): an admitted request is answered 200
	// with an empty body and the key's identity in response headers
	// (id_header and owner_header, under the same names and with the same
	// "off", and X-Api-Key-Scopes, the key's scopes comma-separated), and
	// the next handler is not called. Refusals, limits and usage metering
	// are the same as without it. See docs/auth-server.md. Default: false.
	AuthServer bool `json:"auth_server,omitempty"`

	// RetryAfter is the Retry-After of 503 answers, rounded up to whole
	// seconds. Default: 5s.
	RetryAfter caddy.Duration `json:"retry_after,omitempty"`

	// Cache tunes the in-process verification cache.
	Cache *CacheConfig `json:"cache,omitempty"`

	// StoreTimeout is the deadline of every key store query; a request
	// whose key is not cached gets 503 when it passes. Default: 2s.
	StoreTimeout caddy.Duration `json:"store_timeout,omitempty"`

	// MaxStoreQueries bounds the key store queries in flight at once, per
	// store and cache configuration. Default: 16.
	MaxStoreQueries int `json:"max_store_queries,omitempty"`

	// FailedAuthLimit is each client's budget of failed key checks
	// (malformed, unknown or revoked keys), kept per client address:
	// Caddy's client IP, which honours trusted_proxies, and for IPv6 the
	// /64 it belongs to. A client past its budget gets 429 with
	// Retry-After for every key that is not already cached, before the key
	// store is asked, so that a flood of made-up keys cannot crowd out the
	// store queries of real ones. A check that needs the store counts
	// until the store answers that the key exists. While the budget is on,
	// each client may also have at most a quarter of max_store_queries
	// lookups in flight at once; its further lookups wait for its own
	// earlier ones (up to store_timeout, then 429), not in the queue all
	// clients share. Default: 20/s with a burst of 100.
	FailedAuthLimit *FailedAuthLimit `json:"failed_auth_limit,omitempty"`

	// RateLimit limits each key's requests on this route, unless the key
	// has a limit of its own: GCRA per key, in memory, per gateway
	// process. Refused requests get 429 rate_limited with Retry-After.
	// Default: none (unlimited).
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// RateLimitHeaders, "off", stops the RateLimit-Policy and RateLimit
	// response headers of rate-limited keys. Default: on.
	RateLimitHeaders string `json:"rate_limit_headers,omitempty"`

	// RequireTLS, if set, refuses a working key that arrived over plain
	// HTTP (403 tls_required) unless the peer is on one of its networks
	// (default: loopback), and logs the key as exposed. A request a trusted
	// proxy forwarded with X-Forwarded-Proto: https counts as TLS.
	RequireTLS *RequireTLS `json:"require_tls,omitempty"`

	// LegacyKeys also accepts keys that are not in Keygate's format: keys
	// a system before Keygate issued, imported with `caddy api-key
	// import`. Such a key (16 to 256 visible ASCII characters, not
	// starting with this handler's prefix) skips the format and checksum
	// checks and is looked up by digest like any other key, within the
	// client's budget of failed checks. A string that starts like a
	// Keygate key still must pass every check. Default: off.
	LegacyKeys bool `json:"legacy_keys,omitempty"`

	// IdentityJWT, if set, also sends the upstream a short-lived signed
	// JWT of the key's identity (see IdentityJWT). Default: off.
	IdentityJWT *IdentityJWT `json:"identity_jwt,omitempty"`

	// AllowedOrigins are origins (scheme://host[:port]) whose pages may
	// send state-changing requests authenticated by a cookie. It matters
	// only for keys that came from a cookie source: browsers send cookies
	// by themselves, so a POST, PUT, PATCH or DELETE whose key came from a
	// cookie is refused with 403 when the browser marks it cross-site
	// (Sec-Fetch-Site) or its Origin is not this site's, unless the origin
	// is listed here. Default: none.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`

	logger         *zap.Logger
	clock          clock.Clock     // the app's, unless a test set one
	checks         []check         // the steps after the key is identified, in order
	usage          *sharedRecorder // nil when usage metering is off
	security       *securityLog
	limiter        *sharedLimiter
	limiterKey     limiterKey
	counters       *sharedCounters
	countersKey    counterPoolKey
	usageKey       recorderKey
	format         keystore.Format
	hasher         *keystore.Hasher // peppers.Current
	peppers        keystore.Peppers
	otherPeppers   []*keystore.Hasher // peppers.Others(), tried in turn on a miss
	sources        []KeySource
	problems       *problems
	verifier       *sharedVerifier
	poolKey        verifierKey
	idHeader       string
	ownerHeader    string
	jwtHeader      string // identity_jwt's header, once validated
	issuer         *signing.Issuer
	keyring        *sharedKeyring
	keyringKey     keyringKey
	identityNames  []string // every identity header name a client must not set
	trailerBlocked []string // header names never forwarded as request trailers
	failures       *failureBudget
	failedDelay    time.Duration   // how long an answer to a client out of budget is held
	done           <-chan struct{} // closed when the handler's config is unloaded
	shutdown       chan struct{}   // closed when the handler's server begins to shut down; nil outside a server
	pending        *pendingLookups
	crossOrigin    *http.CrossOriginProtection
	lastErrLog     *atomic.Int64 // unix nanos of the last store error logged at error level
	proxyNoted     *atomic.Bool  // see noteProxy
}

// FailedAuthLimit is the budget of failed key checks per client.
type FailedAuthLimit struct {
	// Off turns the budget off.
	Off bool `json:"off,omitempty"`
	// Rate is the sustained rate of failures a client may have: "N/s",
	// "N/m" or "N/h". Default: 20/s.
	Rate string `json:"rate,omitempty"`
	// Burst is how many failures a client may have at once. Default: 100.
	Burst int `json:"burst,omitempty"`
	// Delay is how long the 429 answer to a client out of its budget is
	// held before it is sent. A client that waits for each answer, as
	// every HTTP/1.1 connection does, then costs the gateway one answer
	// per connection per Delay, not as many as it can send, leaving the
	// CPU to the other clients. At most 8,192 answers are held at once
	// in a process, 2,048 per client; beyond that they are sent at once.
	// A hold ends early when the client goes away or the server shuts
	// down or reloads, and lasts at most half the server's write timeout.
	// 0 sends them at once. Default: 1s, or 0 with auth_server (a held
	// answer there holds a request of the proxy in front). At most 1m.
	Delay *caddy.Duration `json:"delay,omitempty"`
}

// CacheConfig tunes the verification cache.
type CacheConfig struct {
	// Size is the number of keys kept in memory. Default: 100000.
	Size int64 `json:"size,omitempty"`
	// TTL is how long a cached key is trusted without asking the store;
	// a revocation takes effect within it. Default: 30s.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// MaxStale is how much longer than TTL a cached key keeps working
	// while the store cannot be reached. 0 turns this off: keys are then
	// refused with 503 as soon as their entry is older than TTL and the
	// store does not answer. Default (when absent): 5m.
	MaxStale *caddy.Duration `json:"max_stale,omitempty"`
	// NegativeSize is the number of unknown keys remembered, in a cache
	// of their own so that random keys cannot push real ones out.
	// Default: 10000.
	NegativeSize int64 `json:"negative_size,omitempty"`
	// NegativeTTL is how long an unknown key is remembered. Default: 10s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
}

// Defaults that the cache package does not decide.
const (
	defaultIDHeader    = "X-Api-Key-Id"
	defaultOwnerHeader = "X-Api-Key-Owner"
	defaultRealm       = "api"
	defaultRetryAfter  = 5 * time.Second
	defaultMaxStale    = 5 * time.Minute
	// The failed-key-check budget per client, and how many clients it
	// remembers (about 64 bytes each).
	defaultFailedAuthRate  = "20/s"
	defaultFailedAuthBurst = 100
	defaultFailedAuthDelay = time.Second
	maxFailedAuthDelay     = time.Minute
	failedAuthClients      = 65536
	// minStoreTimeout is the shortest store_timeout accepted: a local
	// SQLite lookup takes tens of microseconds, a PostgreSQL one across a
	// network a millisecond or more.
	minStoreTimeout = 10 * time.Millisecond
	// provisionTimeout bounds the first contact with the store at start
	// or reload. PostgreSQL that does not answer in time is not an error
	// (see keystore.Open); the gateway answers 503 until it does.
	provisionTimeout = 5 * time.Second
)

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.api_key",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision checks the configuration and connects to the key store,
// sharing store and cache with every other handler (and the previous
// config, across reloads) that uses the same settings.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.lastErrLog = new(atomic.Int64)
	h.proxyNoted = new(atomic.Bool)
	registerMetrics(ctx)
	if err := h.validateConfig(); err != nil {
		return err
	}
	app, err := keygateApp(ctx)
	if err != nil {
		return err
	}
	if h.clock == nil {
		h.clock = clock.Or(app.clock)
	}
	// Each setting: the handler's own, else the keygate global option's,
	// else the environment's, else the default.
	database, databaseAs := h.Database, "database"
	if database == "" && app.Database != "" {
		database, databaseAs = app.Database, "keygate database"
	}
	dsn, err := storeLocation(database, databaseAs)
	if err != nil {
		return err
	}
	// `caddy validate` checks the configuration; it must not create a
	// store or a pepper file, record a pepper or a prefix.
	validating := caddyValidating()
	if warning := keystore.CheckStoreDir(dsn); warning != "" {
		h.logger.Warn(warning)
	}
	pepperSetting, pepperAs, rotation := h.Pepper, "pepper", h.pepperRotation()
	if pepperSetting == "" && app.Pepper != "" {
		pepperSetting, pepperAs, rotation = app.Pepper, "keygate pepper", app.pepperRotation()
	}
	pepper, err := storePepper(pepperSetting, pepperAs, "", "", dsn, !validating)
	if err != nil {
		return err
	}
	if pepper != nil {
		if h.peppers, err = rotation.peppers(pepper); err != nil {
			return err // "pepper is …"
		}
		h.hasher, h.otherPeppers = h.peppers.Current, h.peppers.Others()
	} else if rotation.given() {
		return errors.New("previous_peppers and next_pepper need the pepper they rotate from or to: set pepper too")
	}
	prefix := h.Prefix
	if prefix == "" {
		prefix = app.Prefix
	}
	if prefix == "" {
		prefix = os.Getenv(envPrefix)
	}
	if h.format, err = keystore.NewFormat(prefix); err != nil {
		if h.Prefix == "" && app.Prefix == "" {
			return fmt.Errorf("%s: %v", envPrefix, err)
		}
		return err
	}
	h.problems = newProblems(h.realm(), h.Scopes, retrySeconds(h.RetryAfter))
	h.checks = []check{statusCheck{h.problems}}
	if h.RequireTLS != nil {
		plain, err := h.RequireTLS.networks()
		if err != nil {
			return err
		}
		h.checks = append(h.checks, tlsCheck{plain, h.problems.tlsRequired,
			&exposureLog{logger: h.logger.Named("security"), last: map[string]time.Time{}}})
	}
	if len(h.Scopes) > 0 {
		h.checks = append(h.checks, scopeCheck{h.Scopes, h.problems.scope})
	}
	h.checkLogRedaction(ctx)
	if h.failures, err = acquireFailureBudget(h.FailedAuthLimit); err != nil {
		return err
	}
	h.done, h.shutdown = ctx.Done(), nil
	if h.failures != nil {
		h.pending = newPendingLookups(h.cacheConfig().MaxQueries)
		h.failedDelay = failedAuthDelay(h.FailedAuthLimit, h.AuthServer)
		if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && h.failedDelay > 0 {
			// Caddy's write timeout runs from the end of the request's
			// headers: a hold must leave time to send the answer.
			if srv.WriteTimeout > 0 {
				h.failedDelay = min(h.failedDelay, time.Duration(srv.WriteTimeout)/2)
			}
			// Held answers end when the server begins to shut down: on
			// exit, Caddy waits for them before it cancels the config's
			// context.
			ch := make(chan struct{})
			var once sync.Once
			onServerShutdown(srv, func() { once.Do(func() { close(ch) }) })
			h.shutdown = ch
		}
	}

	if validating {
		h.logger.Info("api_key configuration checked; the key store is opened at start, not by validate",
			zap.String("database", keystore.RedactDSN(dsn)))
		return nil
	}
	if created, err := newEmbeddedStore(dsn); err == nil && created {
		// A mistyped path makes a new store that no key is in: say so.
		level := zapcore.WarnLevel
		if dsn == DefaultDatabase() {
			level = zapcore.InfoLevel // the first start of a default setup
		}
		if ce := h.logger.Check(level, "creating a new, empty key store: no key exists in it yet"); ce != nil {
			ce.Write(zap.String("database", keystore.RedactDSN(dsn)))
		}
	}
	h.poolKey = verifierKey{
		store: newStoreKey(dsn, h.peppers),
		cfg:   h.cacheConfig(),
	}
	openCtx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	v, err := app.acquireVerifier(openCtx, h.poolKey)
	if err != nil {
		return fmt.Errorf("opening key store %s: %w", keystore.RedactDSN(dsn), err)
	}
	h.verifier = v
	if h.limiter, h.limiterKey, err = app.acquireLimiter(h.poolKey.store); err != nil {
		return err
	}
	h.checks = append(h.checks, ipCheck{h.problems.ipNotAllowed}, h.rateLimitStep(h.limiter))
	if h.counters, h.countersKey, err = app.acquireCounters(h.poolKey); err != nil {
		return err
	}
	h.checks = append(h.checks, h.quotaStep(h.counters))
	if err := h.provisionIdentityJWT(openCtx, app); err != nil {
		return err
	}
	if u := app.usageSettings(); u != nil {
		if h.usage, h.usageKey, err = app.acquireRecorder(openCtx, h.poolKey, u); err != nil {
			return fmt.Errorf("usage metering: %w", err)
		}
	}
	// Tell the CLI which prefix this gateway accepts, so that it does not
	// make keys no gateway takes. Advisory: a store that cannot be written
	// now (down, or a role without the right) only loses the check.
	if err := v.store.AcceptPrefix(openCtx, h.format.Prefix()); err != nil {
		if keystore.PermissionDenied(err) {
			// A gateway's runtime role may not write keygate_meta; say so
			// once a process, not at every reload.
			if _, warned := prefixWarned.LoadOrStore(h.poolKey.store.dsn+"\x00"+h.format.Prefix(), true); !warned {
				h.logger.Warn("this database role may not record the key prefix in the store, so the CLI cannot check that new keys carry it; "+
					"record it with `caddy api-key migrate --prefix "+h.format.Prefix()+"` as the management role", zap.Error(err))
			}
		} else {
			h.logger.Debug("could not record the key prefix in the store", zap.Error(err))
		}
	}
	h.security = newSecurityLog(h.logger)
	h.logger.Info("api_key ready",
		zap.String("database", keystore.RedactDSN(dsn)),
		zap.String("prefix", h.format.Prefix()),
		zap.Stringers("sources", h.sources))
	return nil
}

// validateConfig checks every field that needs no outside resource and
// fills in defaults; each step checks its own settings.
func (h *Handler) validateConfig() error {
	if h.Prefix != "" {
		if err := keystore.ValidatePrefix(h.Prefix); err != nil {
			return err
		}
	}
	for _, validate := range []func() error{h.validateSources, h.validateScopes, h.validateIdentity, h.validateAuthServer, h.validateCache, h.validateRateLimit} {
		if err := validate(); err != nil {
			return err
		}
	}
	if _, _, err := failedAuthLimit(h.FailedAuthLimit); err != nil {
		return err
	}
	if h.RetryAfter < 0 {
		return fmt.Errorf("retry_after must not be negative")
	}
	if strings.ContainsAny(h.Realm, "\"\\") || strings.IndexFunc(h.Realm, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		return fmt.Errorf("realm %q may contain only printable ASCII without quotes or backslashes", h.Realm)
	}
	return nil
}

func (h *Handler) realm() string {
	if h.Realm == "" {
		return defaultRealm
	}
	return h.Realm
}

func retrySeconds(d caddy.Duration) int {
	if d == 0 {
		d = caddy.Duration(defaultRetryAfter)
	}
	return int((time.Duration(d) + time.Second - 1) / time.Second)
}

// DefaultDatabase is the embedded store used when none is configured, by
// the directive and the CLI alike.
func DefaultDatabase() string {
	return "sqlite:" + filepath.Join(caddy.AppDataDir(), "keygate", "keys.db")
}

// filePlaceholder is a pepper given as one {file.PATH} placeholder.
// prefixWarned holds the stores and prefixes whose prefix a gateway was
// refused to record, so that the warning is logged once.
var prefixWarned sync.Map // dsn + "\x00" + prefix -> true

var filePlaceholder = regexp.MustCompile(`^\{file\.([^{}]+)\}$`)

// resolvePepper replaces placeholders in the configured pepper; with the
// embedded store and no pepper it loads or creates the pepper file.
func resolvePepper(repl *caddy.Replacer, configured, dsn string) ([]byte, error) {
	if configured == "" {
		if !keystore.IsSQLite(dsn) {
			return nil, errors.New("pepper is required with PostgreSQL: set it to a secret of at least 32 bytes, " +
				"e.g. pepper {env.KEYGATE_PEPPER} with KEYGATE_PEPPER=$(openssl rand -hex 32), the same for every gateway and the CLI")
		}
		p, err := keystore.LoadOrCreatePepperFile(keystore.PepperFileFor(keystore.SQLitePath(dsn)))
		if err != nil {
			return nil, fmt.Errorf("pepper: %v", err)
		}
		return p, nil
	}
	if m := filePlaceholder.FindStringSubmatch(strings.TrimSpace(configured)); m != nil {
		// A pepper file named here gets the same checks as the generated
		// one: a file others can read is refused.
		p, err := keystore.ReadPepperFile(m[1])
		if err != nil {
			return nil, fmt.Errorf("pepper: %v", err)
		}
		return p, nil
	}
	// An empty placeholder is reported below, with a hint.
	p, err := repl.ReplaceOrErr(configured, false, true)
	if err != nil {
		// Caddy's error quotes the placeholder it did not know, which in a
		// literal pepper is a piece of the secret.
		return nil, errors.New("pepper: the value holds a {…} that is not a known placeholder; " +
			"use {env.NAME} or {file.PATH} (or a pepper file), and keep braces out of a literal pepper")
	}
	p = strings.TrimSpace(p)
	if p == "" {
		return nil, fmt.Errorf("pepper %s is empty: is the environment variable or file it names set?", configured)
	}
	return []byte(p), nil
}

// Cleanup releases this handler's share of the store and cache. It is safe
// after a failed Provision.
func (h *Handler) Cleanup() error {
	if h.failures != nil {
		releaseFailureBudget(h.failures)
		h.failures = nil
	}
	h.security.close()
	h.security = nil
	var errs []error
	if h.verifier != nil {
		h.verifier = nil
		errs = append(errs, releaseVerifier(h.poolKey))
	}
	if h.limiter != nil {
		h.limiter = nil
		errs = append(errs, releaseLimiter(h.limiterKey))
	}
	if h.keyring != nil {
		h.keyring, h.issuer = nil, nil
		errs = append(errs, releaseKeyring(h.keyringKey))
	}
	if h.counters != nil { // they hold the store open until their counts are written
		h.counters = nil
		errs = append(errs, releaseCounters(h.countersKey))
	}
	// After the cache: the recorder holds the store open until it has
	// written its last counts.
	if h.usage != nil {
		h.usage = nil
		errs = append(errs, releaseRecorder(h.usageKey))
	}
	return errors.Join(errs...)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
