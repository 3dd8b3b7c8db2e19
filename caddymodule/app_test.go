package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/keygate/keygate/keystore"
)

func TestGlobalOptionAdapt(t *testing.T) {
	input := "{\n\tkeygate {\n\t\tdatabase postgres://db/keys\n\t\tpepper {env.KEYGATE_PEPPER}\n\t\tprevious_peppers {env.OLD}\n\t\tnext_pepper {env.NEXT}\n\t\tprefix acme\n\t\trate_limit_keys 5000\n\t}\n}\n\n:8080 {\n\tapi_key\n\trespond ok\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, cfg.Apps["keygate"], []byte(`{"database":"postgres://db/keys","pepper":"{env.KEYGATE_PEPPER}","previous_peppers":["{env.OLD}"],"next_pepper":"{env.NEXT}","prefix":"acme","rate_limit_keys":5000}`)) {
		t.Errorf("apps.keygate = %s", cfg.Apps["keygate"])
	}
	if cfg.Apps["http"] == nil {
		t.Errorf("no http app: %s", out)
	}
}

func TestGlobalOptionErrors(t *testing.T) {
	for input, want := range map[string]string{
		"{\n\tkeygate x\n}\n:80\n":                                     "takes no arguments on its first line",
		"{\n\tkeygate {\n\t\tbogus 1\n\t}\n}\n:80\n":                   "unknown setting 'bogus'",
		"{\n\tkeygate {\n\t\tdatabase\n\t}\n}\n:80\n":                  "database needs a value",
		"{\n\tkeygate {\n\t\tdatabase a b\n\t}\n}\n:80\n":              "takes one value",
		"{\n\tkeygate {\n\t\tprefix a\n\t\tprefix b\n\t}\n}\n:80\n":    "'prefix' given more than once",
		"{\n\tkeygate {\n\t\tprefix no-pe\n\t}\n}\n:80\n":              "keygate prefix",
		"{\n\tkeygate {\n\t}\n\tkeygate {\n\t}\n}\n:80\n":              "given more than once: put every setting",
		"{\n\tkeygate {\n\t\tdatabase x\n\t\t}\n\t}\n}\n:80\n":         "",
		"{\n\tkeygate {\n\t\tpepper secret\n\t\tfrom bearer\n\t}\n}\n": "unknown setting 'from'",
		"{\n\tkeygate {\n\t\trate_limit_keys 0\n\t}\n}\n:80\n":         "rate_limit_keys must be a positive whole number, got '0'",
		"{\n\tkeygate {\n\t\tprevious_peppers\n\t}\n}\n:80\n":          "previous_peppers needs at least one pepper",
		"{\n\tkeygate {\n\t\tnext_pepper a b\n\t}\n}\n:80\n":           "takes one value",
		"{\n\tkeygate {\n\t\trate_limit_keys lots\n\t}\n}\n:80\n":      "rate_limit_keys must be a positive whole number, got 'lots'",
	} {
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("adapting %q: %v; want an error with %q and its line", input, err, want)
		}
	}
}

// A handler takes each setting from its own options, else from the
// keygate app, else the environment.
func TestHandlerSettingsFromApp(t *testing.T) {
	t.Setenv(envDatabase, "")
	t.Setenv(envPepper, "")
	t.Setenv(envPepperFile, "")
	t.Setenv(envPrefix, "")
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // the default store, should a case fall back to it
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	app, _ := json.Marshal(App{Database: ts.dsn, Pepper: testPepper})
	provisionIn := func(h *Handler, apps caddy.ModuleMap) (*Handler, error) {
		cfgCtx, err := caddy.ProvisionContext(&caddy.Config{AppsRaw: apps})
		if err != nil {
			return h, err
		}
		ctx, cancel := caddy.NewContext(cfgCtx)
		err = h.Provision(ctx)
		t.Cleanup(func() {
			cancel()
			h.Cleanup()
		})
		return h, err
	}

	// Store and pepper from the app: the key is accepted.
	h, err := provisionIn(&Handler{}, caddy.ModuleMap{"keygate": app})
	if err != nil {
		t.Fatal(err)
	}
	if h.poolKey.store.dsn != ts.dsn {
		t.Fatalf("handler opened %s, want the app's %s", h.poolKey.store.dsn, ts.dsn)
	}
	if s := serve(h, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("key refused: %d %s", s.rec.Code, s.rec.Body)
	}

	// The handler's own database wins.
	other := newTestStore(t)
	h, err = provisionIn(&Handler{Database: other.dsn}, caddy.ModuleMap{"keygate": app})
	if err != nil {
		t.Fatal(err)
	}
	if h.poolKey.store.dsn != other.dsn {
		t.Fatalf("handler opened %s, want its own %s", h.poolKey.store.dsn, other.dsn)
	}

	// The handler's own pepper wins: a wrong one is refused by the store.
	_, err = provisionIn(&Handler{Pepper: strings.Repeat("ab", 32)}, caddy.ModuleMap{"keygate": app})
	if err == nil || !strings.Contains(err.Error(), "pepper") {
		t.Fatalf("handler pepper over the app's: %v", err)
	}

	// The app's prefix applies; the handler's own wins.
	prefixed, _ := json.Marshal(App{Database: ts.dsn, Pepper: testPepper, Prefix: "acme"})
	if h, err = provisionIn(&Handler{}, caddy.ModuleMap{"keygate": prefixed}); err != nil || h.format.Prefix() != "acme" {
		t.Fatalf("prefix from the app: %v %q", err, h.format.Prefix())
	}
	if h, err = provisionIn(&Handler{Prefix: "kg"}, caddy.ModuleMap{"keygate": prefixed}); err != nil || h.format.Prefix() != "kg" {
		t.Fatalf("the handler's prefix: %v %q", err, h.format.Prefix())
	}

	// Errors name the setting they come from.
	bad, _ := json.Marshal(App{Database: "mysql://x"})
	if _, err = provisionIn(&Handler{}, caddy.ModuleMap{"keygate": bad}); err == nil || !strings.Contains(err.Error(), "keygate database") {
		t.Fatalf("a bad app database: %v", err)
	}
	badPrefix, _ := json.Marshal(App{Prefix: "a-b"})
	if _, err = provisionIn(&Handler{}, caddy.ModuleMap{"keygate": badPrefix}); err == nil || !strings.Contains(err.Error(), "keygate prefix") {
		t.Fatalf("a bad app prefix: %v", err)
	}
}
