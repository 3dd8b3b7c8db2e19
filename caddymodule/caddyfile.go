package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	api_key [<matcher>] {
//		database          <dsn>
//		pepper            <secret>
//		previous_peppers  <secret...>
//		next_pepper       <secret>
//		prefix            <prefix>
//		from              bearer | header <name> | query <name> | cookie <name>
//		scopes            <scope...>
//		id_header         <name> | off
//		owner_header      <name> | off
//		realm             <realm>
//		handle_errors
//		auth_server
//		retry_after       <duration>
//		store_timeout     <duration>
//		max_store_queries <n>
//		failed_auth_limit <n>/s|m|h [burst <n>] [delay <duration>] | off
//		rate_limit        <n>/s|m|h [burst <n>]
//		rate_limit_headers on | off
//		legacy_keys       [on | off]
//		require_tls       [<plain network...>]
//		allowed_origins   <origin...>
//		identity_jwt {
//			audience <name>
//			header   <name>
//			issuer   <name>
//			lifetime <duration>
//			refresh  <duration>
//		}
//		cache {
//			size         <n>
//			ttl          <duration>
//			max_stale    <duration> | off
//			negative_size <n>
//			negative_ttl <duration>
//		}
//	}
//
// Every subdirective is optional (identity_jwt needs its audience);
// `from` may be given several times
// (tried in order); `scopes` and `allowed_origins` accumulate.
// `auth_server` answers admitted requests itself (200, identity in
// response headers) instead of calling the next handler.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.Errf("api_key takes no arguments on its first line, got '%s'; options go in a block", d.Val())
	}
	seen := map[string]bool{}
	once := func(name string) error {
		if seen[name] {
			return d.Errf("subdirective '%s' given more than once", name)
		}
		seen[name] = true
		return nil
	}
	for d.NextBlock(0) {
		name := d.Val()
		switch name {
		case "database", "pepper", "prefix", "realm":
			if err := once(name); err != nil {
				return err
			}
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			switch name {
			case "database":
				h.Database = v
			case "pepper":
				h.Pepper = v
			case "prefix":
				h.Prefix = v
			case "realm":
				h.Realm = v
			}
		case "previous_peppers":
			if err := once(name); err != nil {
				return err
			}
			if h.PreviousPeppers = d.RemainingArgs(); len(h.PreviousPeppers) == 0 {
				return d.Err("previous_peppers needs at least one pepper, e.g. previous_peppers {env.KEYGATE_OLD_PEPPER}")
			}
		case "next_pepper":
			if err := once(name); err != nil {
				return err
			}
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			h.NextPepper = v
		case "from":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("from needs a source: bearer, header <name>, query <name> or cookie <name>")
			}
			src := KeySource{From: args[0]}
			switch {
			case args[0] == FromBearer && len(args) == 1:
			case args[0] == FromBearer:
				return d.Errf("from bearer takes no name")
			case args[0] != FromHeader && args[0] != FromQuery && args[0] != FromCookie:
				return d.Errf("unknown key source %q (use bearer, header <name>, query <name> or cookie <name>)", args[0])
			case len(args) != 2:
				return d.Errf("from %s needs exactly one name", args[0])
			default:
				src.Name = args[1]
			}
			if err := src.validate(); err != nil {
				return d.Err(err.Error())
			}
			h.Sources = append(h.Sources, src)
		case "scopes":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Scopes = append(h.Scopes, args...)
		case "id_header", "owner_header":
			if err := once(name); err != nil {
				return err
			}
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if v == "off" {
				v = "-"
			}
			if name == "id_header" {
				h.IDHeader = v
			} else {
				h.OwnerHeader = v
			}
		case "handle_errors", "auth_server":
			if err := once(name); err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if name == "handle_errors" {
				h.HandleErrors = true
			} else {
				h.AuthServer = true
			}
		case "retry_after", "store_timeout":
			if err := once(name); err != nil {
				return err
			}
			dur, err := positiveDurationArg(d)
			if err != nil {
				return err
			}
			if name == "retry_after" {
				h.RetryAfter = dur
			} else {
				h.StoreTimeout = dur
			}
		case "max_store_queries":
			if err := once(name); err != nil {
				return err
			}
			n, err := intArg(d)
			if err != nil {
				return err
			}
			h.MaxStoreQueries = int(n)
		case "failed_auth_limit":
			if err := once(name); err != nil {
				return err
			}
			args := d.RemainingArgs()
			const usage = "failed_auth_limit takes '<n>/s|m|h [burst <n>] [delay <duration>]' or 'off'"
			switch {
			case len(args) == 1 && args[0] == "off":
				h.FailedAuthLimit = &FailedAuthLimit{Off: true}
			case len(args) > 1 && args[0] == "off":
				return d.Err("failed_auth_limit: off takes no rate, burst or delay")
			case len(args) == 0 || len(args)%2 == 0:
				return d.Err(usage)
			default:
				l := &FailedAuthLimit{Rate: args[0]}
				seen := map[string]bool{}
				for i := 1; i < len(args); i += 2 {
					opt, v := args[i], args[i+1]
					if seen[opt] {
						return d.Errf("failed_auth_limit: %s given twice", opt)
					}
					seen[opt] = true
					switch opt {
					case "burst":
						n, err := strconv.Atoi(v)
						if err != nil || n <= 0 {
							return d.Errf("failed_auth_limit: burst must be a positive whole number, got '%s'", v)
						}
						l.Burst = n
					case "delay":
						dur, err := caddy.ParseDuration(v)
						if err != nil {
							return d.Errf("failed_auth_limit: delay must be a duration such as 1s or 500ms, got '%s'", v)
						}
						cd := caddy.Duration(dur)
						l.Delay = &cd
					default:
						return d.Err(usage)
					}
				}
				h.FailedAuthLimit = l
			}
			if _, _, err := failedAuthLimit(h.FailedAuthLimit); err != nil {
				return d.Err(err.Error())
			}
		case "rate_limit":
			if err := once(name); err != nil {
				return err
			}
			args := d.RemainingArgs()
			switch {
			case len(args) == 1:
				h.RateLimit = &RateLimit{Rate: args[0]}
			case len(args) == 3 && args[1] == "burst":
				n, err := strconv.Atoi(args[2])
				if err != nil || n <= 0 {
					return d.Errf("rate_limit: burst must be a positive whole number, got '%s'", args[2])
				}
				h.RateLimit = &RateLimit{Rate: args[0], Burst: n}
			default:
				return d.Errf("rate_limit takes '<n>/s|m|h [burst <n>]', e.g. 'rate_limit 100/s burst 200'")
			}
			if _, err := h.RateLimit.policy("rate_limit"); err != nil {
				return d.Err(err.Error())
			}
		case "rate_limit_headers":
			if err := once(name); err != nil {
				return err
			}
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if v != "on" && v != "off" {
				return d.Errf("rate_limit_headers takes 'on' or 'off', got '%s'", v)
			}
			h.RateLimitHeaders = v
		case "require_tls":
			if err := once(name); err != nil {
				return err
			}
			h.RequireTLS = &RequireTLS{PlainNetworks: d.RemainingArgs()}
			if _, err := h.RequireTLS.networks(); err != nil {
				return d.Err(err.Error())
			}
		case "legacy_keys":
			if err := once(name); err != nil {
				return err
			}
			switch args := d.RemainingArgs(); {
			case len(args) == 0 || len(args) == 1 && args[0] == "on":
				h.LegacyKeys = true
			case len(args) == 1 && args[0] == "off":
				h.LegacyKeys = false
			default:
				return d.Errf("legacy_keys takes nothing, 'on' or 'off'")
			}
		case "allowed_origins":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.AllowedOrigins = append(h.AllowedOrigins, args...)
		case "cache":
			if err := once(name); err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if err := h.unmarshalCache(d); err != nil {
				return err
			}
		case "identity_jwt":
			if err := once(name); err != nil {
				return err
			}
			if d.NextArg() {
				return d.Errf("identity_jwt takes no arguments, got '%s'; options go in a block", d.Val())
			}
			if err := h.unmarshalIdentityJWT(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective '%s'", name)
		}
	}
	return nil
}

func (h *Handler) unmarshalCache(d *caddyfile.Dispenser) error {
	h.Cache = &CacheConfig{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("cache option '%s' given more than once", name)
		}
		seen[name] = true
		switch name {
		case "size", "negative_size":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			if name == "size" {
				h.Cache.Size = n
			} else {
				h.Cache.NegativeSize = n
			}
		case "ttl", "negative_ttl":
			dur, err := positiveDurationArg(d)
			if err != nil {
				return err
			}
			if name == "ttl" {
				h.Cache.TTL = dur
			} else {
				h.Cache.NegativeTTL = dur
			}
		case "max_stale":
			if !d.NextArg() {
				return d.ArgErr()
			}
			var dur caddy.Duration
			if d.Val() != "off" {
				d.Prev()
				var err error
				if dur, err = durationArg(d); err != nil {
					return err
				}
			} else if d.NextArg() {
				return d.ArgErr()
			}
			h.Cache.MaxStale = &dur
		default:
			return d.Errf("unrecognized cache option '%s'", name)
		}
	}
	return nil
}

func (h *Handler) unmarshalIdentityJWT(d *caddyfile.Dispenser) error {
	h.IdentityJWT = &IdentityJWT{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("identity_jwt option '%s' given more than once", name)
		}
		seen[name] = true
		switch name {
		case "audience", "header", "issuer":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			switch name {
			case "audience":
				h.IdentityJWT.Audience = v
			case "header":
				h.IdentityJWT.Header = v
			case "issuer":
				h.IdentityJWT.Issuer = v
			}
		case "lifetime", "refresh":
			dur, err := positiveDurationArg(d)
			if err != nil {
				return err
			}
			if name == "lifetime" {
				h.IdentityJWT.Lifetime = dur
			} else {
				h.IdentityJWT.Refresh = dur
			}
		default:
			return d.Errf("unrecognized identity_jwt option '%s'", name)
		}
	}
	if h.IdentityJWT.Audience == "" {
		return d.Err("identity_jwt needs an audience: the name the upstream checks its tokens are for")
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser) (string, error) {
	name := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s needs a value", name)
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s takes one value, got another: '%s'", name, d.Val())
	}
	return v, nil
}

func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: invalid duration '%s': %v", name, v, err)
	}
	if dur < 0 {
		return 0, d.Errf("%s must not be negative", name)
	}
	return caddy.Duration(dur), nil
}

// positiveDurationArg is durationArg for options where 0 has no meaning
// (in JSON, 0 stands for "not set": the default).
func positiveDurationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	dur, err := durationArg(d)
	if err == nil && dur == 0 {
		return 0, d.Errf("%s must be greater than 0 (leave it out for the default)", name)
	}
	return dur, err
}

func intArg(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, d.Errf("%s must be a positive whole number, got '%s'", name, v)
	}
	return n, nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
