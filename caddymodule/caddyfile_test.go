package caddymodule

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	// reverse_proxy and the rest of the standard directives, for the
	// adapt test.
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// jsonEqual reports whether two JSON documents hold the same values,
// ignoring formatting and key order.
func jsonEqual(t *testing.T, got, want []byte) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("bad JSON %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("bad JSON %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string // the handler as JSON
	}{
		{"bare directive", `api_key`, `{}`},
		{"empty block", `api_key {
		}`, `{}`},
		{"every option", `api_key {
			database          "postgres://gw:secret@db:5432/keys?sslmode=disable"
			pepper            {env.KEYGATE_PEPPER}
			previous_peppers  {env.KEYGATE_OLD_PEPPER} {file./etc/keygate/older}
			next_pepper       {env.KEYGATE_NEXT_PEPPER}
			prefix            acme_live
			from              bearer
			from              header x-api-key
			from              query api_key
			from              cookie session_key
			scopes            read write
			id_header         X-Consumer-Id
			owner_header      X-Consumer-Owner
			realm             "my api"
			handle_errors
			auth_server
			retry_after       10s
			store_timeout     500ms
			max_store_queries 4
			failed_auth_limit 5/m burst 10
			rate_limit        100/s burst 200
			rate_limit_headers off
			legacy_keys
			require_tls       10.0.0.0/8 fd00::/8
			allowed_origins   https://app.example.com
			allowed_origins   https://admin.example.com:8443
			cache {
				size          1000
				ttl           1m
				max_stale     10m
				negative_size 50
				negative_ttl  2s
			}
		}`, `{
			"database": "postgres://gw:secret@db:5432/keys?sslmode=disable",
			"pepper": "{env.KEYGATE_PEPPER}",
			"previous_peppers": ["{env.KEYGATE_OLD_PEPPER}", "{file./etc/keygate/older}"],
			"next_pepper": "{env.KEYGATE_NEXT_PEPPER}",
			"prefix": "acme_live",
			"sources": [
				{"from": "bearer"},
				{"from": "header", "name": "X-Api-Key"},
				{"from": "query", "name": "api_key"},
				{"from": "cookie", "name": "session_key"}
			],
			"scopes": ["read", "write"],
			"id_header": "X-Consumer-Id",
			"owner_header": "X-Consumer-Owner",
			"realm": "my api",
			"handle_errors": true,
			"auth_server": true,
			"retry_after": 10000000000,
			"store_timeout": 500000000,
			"max_store_queries": 4,
			"failed_auth_limit": {"rate": "5/m", "burst": 10},
			"rate_limit": {"rate": "100/s", "burst": 200},
			"rate_limit_headers": "off",
			"legacy_keys": true,
			"require_tls": {"plain_networks": ["10.0.0.0/8", "fd00::/8"]},
			"allowed_origins": ["https://app.example.com", "https://admin.example.com:8443"],
			"cache": {
				"size": 1000,
				"ttl": 60000000000,
				"max_stale": 600000000000,
				"negative_size": 50,
				"negative_ttl": 2000000000
			}
		}`},
		{"sources keep their order", `api_key {
			from cookie c
			from query q
			from header X-K
			from bearer
		}`, `{"sources": [
			{"from": "cookie", "name": "c"},
			{"from": "query", "name": "q"},
			{"from": "header", "name": "X-K"},
			{"from": "bearer"}
		]}`},
		{"scopes accumulate", `api_key {
			scopes a b
			scopes c
			scopes a
		}`, `{"scopes": ["a", "b", "c", "a"]}`},
		{"failed_auth_limit off", `api_key {
			failed_auth_limit off
		}`, `{"failed_auth_limit": {"off": true}}`},
		{"failed_auth_limit rate only", `api_key {
			failed_auth_limit 100/h
		}`, `{"failed_auth_limit": {"rate": "100/h"}}`},
		{"failed_auth_limit delay", `api_key {
			failed_auth_limit 100/h delay 250ms burst 7
		}`, `{"failed_auth_limit": {"rate": "100/h", "burst": 7, "delay": 250000000}}`},
		{"failed_auth_limit delay 0", `api_key {
			failed_auth_limit 20/s delay 0
		}`, `{"failed_auth_limit": {"rate": "20/s", "delay": 0}}`},
		{"rate_limit rate only", `api_key {
			rate_limit 1000/h
		}`, `{"rate_limit": {"rate": "1000/h"}}`},
		{"identity headers off", `api_key {
			id_header off
			owner_header off
		}`, `{"id_header": "-", "owner_header": "-"}`},
		// "off" must survive JSON as an explicit zero: absent means the
		// 5m default.
		{"max_stale off", `api_key {
			cache {
				max_stale off
			}
		}`, `{"cache": {"max_stale": 0}}`},
		{"max_stale zero duration", `api_key {
			cache {
				max_stale 0s
			}
		}`, `{"cache": {"max_stale": 0}}`},
		{"cache without block", `api_key {
			cache
		}`, `{"cache": {}}`},
		{"day durations", `api_key {
			retry_after 1d
		}`, `{"retry_after": 86400000000000}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, got, []byte(tt.want)) {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestUnmarshalCaddyfileMaxStaleOff checks the pointer itself: "off" is a
// pointer to zero, a missing max_stale is nil.
func TestUnmarshalCaddyfileMaxStaleOff(t *testing.T) {
	var off, absent Handler
	if err := off.UnmarshalCaddyfile(caddyfile.NewTestDispenser("api_key {\ncache {\nmax_stale off\n}\n}")); err != nil {
		t.Fatal(err)
	}
	if err := absent.UnmarshalCaddyfile(caddyfile.NewTestDispenser("api_key {\ncache {\nttl 1s\n}\n}")); err != nil {
		t.Fatal(err)
	}
	if off.Cache == nil || off.Cache.MaxStale == nil || *off.Cache.MaxStale != 0 {
		t.Errorf("max_stale off: got %+v, want a pointer to 0", off.Cache)
	}
	if absent.Cache == nil || absent.Cache.MaxStale != nil {
		t.Errorf("max_stale absent: got %+v, want nil", absent.Cache)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{"argument on first line", "api_key foo", "takes no arguments on its first line, got 'foo'"},
		{"argument before block", "api_key foo {\n}", "takes no arguments on its first line, got 'foo'"},
		{"unknown subdirective", "api_key {\nbogus 1\n}", "unrecognized subdirective 'bogus'"},

		{"database without value", "api_key {\ndatabase\n}", "database needs a value"},
		{"database two values", "api_key {\ndatabase a b\n}", "database takes one value, got another: 'b'"},
		{"pepper without value", "api_key {\npepper\n}", "pepper needs a value"},
		{"prefix two values", "api_key {\nprefix a b\n}", "prefix takes one value, got another: 'b'"},
		{"realm without value", "api_key {\nrealm\n}", "realm needs a value"},
		{"id_header without value", "api_key {\nid_header\n}", "id_header needs a value"},
		{"owner_header two values", "api_key {\nowner_header a b\n}", "owner_header takes one value"},

		{"database twice", "api_key {\ndatabase a\ndatabase b\n}", "subdirective 'database' given more than once"},
		{"pepper twice", "api_key {\npepper a\npepper a\n}", "subdirective 'pepper' given more than once"},
		{"previous_peppers without value", "api_key {\nprevious_peppers\n}", "previous_peppers needs at least one pepper"},
		{"previous_peppers twice", "api_key {\nprevious_peppers a\nprevious_peppers b\n}", "subdirective 'previous_peppers' given more than once"},
		{"next_pepper two values", "api_key {\nnext_pepper a b\n}", "next_pepper takes one value"},
		{"next_pepper twice", "api_key {\nnext_pepper a\nnext_pepper b\n}", "subdirective 'next_pepper' given more than once"},
		{"prefix twice", "api_key {\nprefix a\nprefix b\n}", "subdirective 'prefix' given more than once"},
		{"realm twice", "api_key {\nrealm a\nrealm b\n}", "subdirective 'realm' given more than once"},
		{"id_header twice", "api_key {\nid_header a\nid_header off\n}", "subdirective 'id_header' given more than once"},
		{"owner_header twice", "api_key {\nowner_header off\nowner_header off\n}", "subdirective 'owner_header' given more than once"},
		{"handle_errors twice", "api_key {\nhandle_errors\nhandle_errors\n}", "subdirective 'handle_errors' given more than once"},
		{"retry_after twice", "api_key {\nretry_after 1s\nretry_after 2s\n}", "subdirective 'retry_after' given more than once"},
		{"store_timeout twice", "api_key {\nstore_timeout 1s\nstore_timeout 1s\n}", "subdirective 'store_timeout' given more than once"},
		{"max_store_queries twice", "api_key {\nmax_store_queries 1\nmax_store_queries 2\n}", "subdirective 'max_store_queries' given more than once"},
		{"cache twice", "api_key {\ncache\ncache {\nsize 1\n}\n}", "subdirective 'cache' given more than once"},

		{"from without source", "api_key {\nfrom\n}", "from needs a source"},
		{"from bearer with name", "api_key {\nfrom bearer x\n}", "from bearer takes no name"},
		{"from header without name", "api_key {\nfrom header\n}", "from header needs exactly one name"},
		{"from header two names", "api_key {\nfrom header a b\n}", "from header needs exactly one name"},
		{"from query without name", "api_key {\nfrom query\n}", "from query needs exactly one name"},
		{"from cookie without name", "api_key {\nfrom cookie\n}", "from cookie needs exactly one name"},
		{"from unknown with name", "api_key {\nfrom nope x\n}", `unknown key source "nope"`},
		{"from unknown", "api_key {\nfrom nope\n}", `unknown key source "nope"`},
		{"from invalid header name", "api_key {\nfrom header \"X Key\"\n}", "needs a valid header name"},
		{"from invalid query name", "api_key {\nfrom query a=b\n}", "'query' needs a parameter name"},
		{"from invalid cookie name", "api_key {\nfrom cookie a;b\n}", "needs a valid cookie name"},

		{"scopes without value", "api_key {\nscopes\n}", "wrong argument count"},
		{"handle_errors with value", "api_key {\nhandle_errors yes\n}", "wrong argument count"},
		{"auth_server with value", "api_key {\nauth_server on\n}", "wrong argument count"},
		{"auth_server twice", "api_key {\nauth_server\nauth_server\n}", "subdirective 'auth_server' given more than once"},

		{"retry_after without value", "api_key {\nretry_after\n}", "retry_after needs a value"},
		{"retry_after bad", "api_key {\nretry_after soon\n}", "retry_after: invalid duration 'soon'"},
		{"retry_after negative", "api_key {\nretry_after -1s\n}", "retry_after must not be negative"},
		{"store_timeout bad", "api_key {\nstore_timeout 5\n}", "store_timeout: invalid duration '5'"},
		{"store_timeout negative", "api_key {\nstore_timeout -2s\n}", "store_timeout must not be negative"},
		{"store_timeout two values", "api_key {\nstore_timeout 1s 2s\n}", "store_timeout takes one value"},
		{"max_store_queries zero", "api_key {\nmax_store_queries 0\n}", "max_store_queries must be a positive whole number, got '0'"},
		{"max_store_queries negative", "api_key {\nmax_store_queries -1\n}", "max_store_queries must be a positive whole number, got '-1'"},
		{"max_store_queries fraction", "api_key {\nmax_store_queries 1.5\n}", "max_store_queries must be a positive whole number, got '1.5'"},
		{"max_store_queries word", "api_key {\nmax_store_queries many\n}", "max_store_queries must be a positive whole number, got 'many'"},
		{"max_store_queries without value", "api_key {\nmax_store_queries\n}", "max_store_queries needs a value"},
		{"failed_auth_limit without value", "api_key {\nfailed_auth_limit\n}", "failed_auth_limit takes '<n>/s|m|h [burst <n>] [delay <duration>]' or 'off'"},
		{"failed_auth_limit delay word", "api_key {\nfailed_auth_limit 1/s delay soon\n}", "delay must be a duration such as 1s or 500ms, got 'soon'"},
		{"failed_auth_limit delay negative", "api_key {\nfailed_auth_limit 1/s delay -1s\n}", "delay must be 0 to 1m, got -1s"},
		{"failed_auth_limit delay too long", "api_key {\nfailed_auth_limit 1/s delay 2m\n}", "delay must be 0 to 1m, got 2m0s"},
		{"failed_auth_limit delay twice", "api_key {\nfailed_auth_limit 1/s delay 1s delay 2s\n}", "failed_auth_limit: delay given twice"},
		{"failed_auth_limit unknown option", "api_key {\nfailed_auth_limit 1/s hold 1s\n}", "failed_auth_limit takes"},
		{"failed_auth_limit twice", "api_key {\nfailed_auth_limit off\nfailed_auth_limit off\n}", "subdirective 'failed_auth_limit' given more than once"},
		{"failed_auth_limit bad rate", "api_key {\nfailed_auth_limit 20\n}", "rate \"20\" must be N/s, N/m or N/h"},
		{"failed_auth_limit bad unit", "api_key {\nfailed_auth_limit 20/d\n}", "must be N/s, N/m or N/h"},
		{"failed_auth_limit zero", "api_key {\nfailed_auth_limit 0/s\n}", "must be N/s, N/m or N/h"},
		{"failed_auth_limit burst word", "api_key {\nfailed_auth_limit 1/s burst x\n}", "burst must be a positive whole number, got 'x'"},
		{"failed_auth_limit burst zero", "api_key {\nfailed_auth_limit 1/s burst 0\n}", "burst must be a positive whole number, got '0'"},
		{"failed_auth_limit burst without n", "api_key {\nfailed_auth_limit 1/s burst\n}", "failed_auth_limit takes"},
		{"failed_auth_limit off with rate", "api_key {\nfailed_auth_limit off 1/s\n}", "failed_auth_limit: off takes no rate, burst or delay"},
		{"failed_auth_limit off with delay", "api_key {\nfailed_auth_limit off delay 1s\n}", "failed_auth_limit: off takes no rate, burst or delay"},
		{"rate_limit without value", "api_key {\nrate_limit\n}", "rate_limit takes '<n>/s|m|h [burst <n>]', e.g. 'rate_limit 100/s burst 200'"},
		{"rate_limit twice", "api_key {\nrate_limit 1/s\nrate_limit 2/s\n}", "subdirective 'rate_limit' given more than once"},
		{"rate_limit bad unit", "api_key {\nrate_limit 100/d\n}", "rate_limit: rate \"100/d\" must be N/s, N/m or N/h with N a positive whole number (e.g. 100/s)"},
		{"rate_limit fraction", "api_key {\nrate_limit 0.5/s\n}", "must be N/s, N/m or N/h"},
		{"rate_limit burst zero", "api_key {\nrate_limit 1/s burst 0\n}", "rate_limit: burst must be a positive whole number, got '0'"},
		{"rate_limit burst too big", "api_key {\nrate_limit 1/s burst 2000000\n}", "rate_limit: burst must be 1 to 1000000"},
		{"rate_limit count too big for the default burst", "api_key {\nrate_limit 2000000/s\n}", "needs a burst of at most 1000000"},
		{"rate_limit off", "api_key {\nrate_limit off\n}", "rate \"off\" must be N/s, N/m or N/h"},
		{"rate_limit_headers bad", "api_key {\nrate_limit_headers no\n}", "rate_limit_headers takes 'on' or 'off', got 'no'"},
		{"require_tls bad network", "api_key {\nrequire_tls 10.0.0.0/33\n}", "require_tls: \"10.0.0.0/33\" is not a network in CIDR form"},
		{"legacy_keys bad", "api_key {\nlegacy_keys yes\n}", "legacy_keys takes nothing, 'on' or 'off'"},
		{"legacy_keys twice", "api_key {\nlegacy_keys\nlegacy_keys off\n}", "subdirective 'legacy_keys' given more than once"},
		{"allowed_origins without value", "api_key {\nallowed_origins\n}", "wrong argument count"},

		{"retry_after zero", "api_key {\nretry_after 0\n}", "retry_after must be greater than 0"},
		{"store_timeout zero", "api_key {\nstore_timeout 0s\n}", "store_timeout must be greater than 0"},
		{"cache ttl zero", "api_key {\ncache {\nttl 0\n}\n}", "ttl must be greater than 0"},
		{"cache negative_ttl zero", "api_key {\ncache {\nnegative_ttl 0s\n}\n}", "negative_ttl must be greater than 0"},
		{"cache with argument", "api_key {\ncache big\n}", "wrong argument count"},
		{"cache unknown option", "api_key {\ncache {\nbogus 1\n}\n}", "unrecognized cache option 'bogus'"},
		{"cache option twice", "api_key {\ncache {\nsize 1\nsize 2\n}\n}", "cache option 'size' given more than once"},
		{"cache max_stale twice", "api_key {\ncache {\nmax_stale off\nmax_stale 1s\n}\n}", "cache option 'max_stale' given more than once"},
		{"cache size zero", "api_key {\ncache {\nsize 0\n}\n}", "size must be a positive whole number, got '0'"},
		{"cache size negative", "api_key {\ncache {\nsize -5\n}\n}", "size must be a positive whole number, got '-5'"},
		{"cache size without value", "api_key {\ncache {\nsize\n}\n}", "size needs a value"},
		{"cache negative_size zero", "api_key {\ncache {\nnegative_size 0\n}\n}", "negative_size must be a positive whole number"},
		{"cache ttl bad", "api_key {\ncache {\nttl forever\n}\n}", "ttl: invalid duration 'forever'"},
		{"cache ttl negative", "api_key {\ncache {\nttl -1s\n}\n}", "ttl must not be negative"},
		{"cache negative_ttl bad", "api_key {\ncache {\nnegative_ttl x\n}\n}", "negative_ttl: invalid duration 'x'"},
		{"cache negative_ttl negative", "api_key {\ncache {\nnegative_ttl -1m\n}\n}", "negative_ttl must not be negative"},
		{"cache max_stale without value", "api_key {\ncache {\nmax_stale\n}\n}", "wrong argument count"},
		{"cache max_stale off with extra", "api_key {\ncache {\nmax_stale off 1s\n}\n}", "wrong argument count"},
		{"cache max_stale bad", "api_key {\ncache {\nmax_stale never\n}\n}", "max_stale: invalid duration 'never'"},
		{"cache max_stale negative", "api_key {\ncache {\nmax_stale -1s\n}\n}", "max_stale must not be negative"},
		{"cache max_stale two values", "api_key {\ncache {\nmax_stale 1s 2s\n}\n}", "max_stale takes one value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil {
				t.Fatalf("no error; want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want one containing %q", err, tt.wantErr)
			}
			// Errors carry the position, so that users find the line.
			if !strings.Contains(err.Error(), "Testfile:") {
				t.Errorf("error %q does not name the file and line", err)
			}
		})
	}
}

// TestCaddyfileAuthServer checks what the configuration check says of
// auth_server settings written in a Caddyfile: it goes with handle_errors
// and with identity headers renamed or off, but an identity header cannot
// be the one its answers carry the scopes in.
func TestCaddyfileAuthServer(t *testing.T) {
	tests := []struct {
		name, input, wantErr string
	}{
		{"alone", "api_key {\nauth_server\n}", ""},
		{"with handle_errors", "api_key {\nauth_server\nhandle_errors\n}", ""},
		{"identity headers off", "api_key {\nauth_server\nid_header off\nowner_header off\n}", ""},
		{"identity headers renamed", "api_key {\nid_header X-Consumer\nowner_header X-Team\nauth_server\n}", ""},
		{"id_header is the scopes header", "api_key {\nauth_server\nid_header x-api-key-scopes\n}",
			"auth_server answers with the key's scopes in X-Api-Key-Scopes; id_header and owner_header must name other headers"},
		{"owner_header is the scopes header", "api_key {\nowner_header X-Api-Key-Scopes\nauth_server\n}",
			"id_header and owner_header must name other headers"},
		{"scopes header without auth_server", "api_key {\nowner_header X-Api-Key-Scopes\n}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatal(err)
			}
			err := h.validateConfig()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %q, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestUnmarshalCaddyfileErrorLine checks that errors point at the
// offending line, not the directive's.
func TestUnmarshalCaddyfileErrorLine(t *testing.T) {
	input := "api_key {\n\tdatabase sqlite:/x\n\tcache {\n\t\tttl 1s\n\t\tsize 0\n\t}\n}"
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	if err == nil || !strings.HasSuffix(err.Error(), "Testfile:5") {
		t.Errorf("error %v, want one at Testfile:5", err)
	}
}

// TestParseCaddyfile covers the directive entry point registered with
// httpcaddyfile.
func TestParseCaddyfile(t *testing.T) {
	h := httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser("api_key {\nprefix acme\n}")}
	mh, err := parseCaddyfile(h)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := mh.(*Handler); !ok || got.Prefix != "acme" {
		t.Errorf("parseCaddyfile = %#v, want *Handler with prefix acme", mh)
	}
	h = httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser("api_key x")}
	if _, err := parseCaddyfile(h); err == nil {
		t.Error("parseCaddyfile accepted an argument on the first line")
	}
}

// handlerChain returns the handlers of a route list in the order Caddy
// runs them, descending into subroutes.
func handlerChain(routes []any) []map[string]any {
	var out []map[string]any
	for _, r := range routes {
		route, _ := r.(map[string]any)
		handlers, _ := route["handle"].([]any)
		for _, h := range handlers {
			hm, _ := h.(map[string]any)
			out = append(out, hm)
			if sub, ok := hm["routes"].([]any); ok {
				out = append(out, handlerChain(sub)...)
			}
		}
	}
	return out
}

// TestCaddyfileAdapt runs the real Caddyfile adapter. There is no `order`
// line: the adapter accepts api_key in a site block and puts it before
// reverse_proxy only thanks to RegisterDirectiveOrder, whatever order the
// directives are written in.
func TestCaddyfileAdapt(t *testing.T) {
	block := `	api_key {
		database sqlite:/var/lib/keygate/keys.db
		from header x-api-key
		scopes read
		id_header off
		cache {
			max_stale off
		}
	}`
	proxy := "\treverse_proxy 127.0.0.1:9000"
	wantHandler := `{
		"handler": "api_key",
		"database": "sqlite:/var/lib/keygate/keys.db",
		"sources": [{"from": "header", "name": "X-Api-Key"}],
		"scopes": ["read"],
		"id_header": "-",
		"cache": {"max_stale": 0}
	}`
	for name, body := range map[string]string{
		"api_key first":       block + "\n" + proxy,
		"reverse_proxy first": proxy + "\n" + block,
	} {
		t.Run(name, func(t *testing.T) {
			input := ":8080 {\n" + body + "\n}\n"
			out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
			if err != nil {
				t.Fatalf("adapting:\n%s\n%v", input, err)
			}
			if len(warnings) > 0 {
				t.Errorf("warnings: %+v", warnings)
			}
			var cfg struct {
				Apps struct {
					HTTP struct {
						Servers map[string]struct {
							Routes []any `json:"routes"`
						} `json:"servers"`
					} `json:"http"`
				} `json:"apps"`
			}
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			if len(cfg.Apps.HTTP.Servers) != 1 {
				t.Fatalf("want one server, got %s", out)
			}
			var chain []map[string]any
			for _, srv := range cfg.Apps.HTTP.Servers {
				chain = handlerChain(srv.Routes)
			}
			apiKey, proxyAt := -1, -1
			for i, h := range chain {
				switch h["handler"] {
				case "api_key":
					apiKey = i
				case "reverse_proxy":
					proxyAt = i
				}
			}
			if apiKey < 0 || proxyAt < 0 || apiKey > proxyAt {
				t.Fatalf("api_key at %d, reverse_proxy at %d; want api_key first in %s", apiKey, proxyAt, out)
			}
			got, _ := json.Marshal(chain[apiKey])
			if !jsonEqual(t, got, []byte(wantHandler)) {
				t.Errorf("api_key handler:\ngot  %s\nwant %s", got, wantHandler)
			}
		})
	}
}

// TestCaddyfileAdaptErrors checks that Caddyfile errors reach the user
// through the adapter.
func TestCaddyfileAdaptErrors(t *testing.T) {
	for input, wantErr := range map[string]string{
		":8080 {\n\tapi_key foo\n}\n":                     "takes no arguments on its first line",
		":8080 {\n\tapi_key {\n\t\tbogus\n\t}\n}\n":       "unrecognized subdirective 'bogus'",
		":8080 {\n\tapi_key {\n\t\tfrom nope x\n\t}\n}\n": `unknown key source "nope"`,
	} {
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("adapting %q: error %v, want one containing %q", input, err, wantErr)
		}
	}
}
