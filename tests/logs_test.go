package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Caddy logs a copy of every request to its access log (with `log`) and,
// when a handler fails, to its error log (reverse_proxy answering 502
// because the upstream is down is the everyday case). These tests look at
// everything Caddy wrote, at every level, for the keys that were sent.

// logWarning is the start of the warning a handler logs when Caddy's
// request logs would record its keys.
const logWarning = "Caddy's request logs would record the API keys"

// deadPort is a loopback port nothing listens on: an upstream that is down.
func deadPort(t *testing.T) int { return freePort(t) }

// keySecrets returns what must never appear in a log for each key sent:
// the key and its secret.
func keySecrets(keys ...string) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k, secretOf(k))
	}
	return out
}

// checkLogHolds fails t if the log holds any of secrets.
func checkLogHolds(t *testing.T, log string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if i := strings.Index(log, s); i >= 0 {
			t.Errorf("the log holds a key or secret:\n%s", lineAt(log, i))
		}
	}
}

// TestDefaultsLogNoKey: with no `from` line, a bare `log` in the site and
// Caddy's default logger at debug level, no line holds a key sent the
// default way, whether the key is accepted, refused, or accepted while
// the upstream is down (the error log).
func TestDefaultsLogNoKey(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.debug = true
	downPort, quietPort := freePort(t), freePort(t)
	site := func(upstream string) string {
		return fmt.Sprintf("\tlog\n\tapi_key\n\treverse_proxy %s", upstream)
	}
	dead := fmt.Sprintf("127.0.0.1:%d", deadPort(t))
	// A site without an access log: only the error log could see a key.
	quiet := siteBlock(quietPort, "\tapi_key\n\treverse_proxy "+dead)
	g.start(g.site(site(up.hostPort()))+siteBlock(downPort, site(dead))+quiet, downPort, quietPort)
	downURL := fmt.Sprintf("http://127.0.0.1:%d", downPort)
	quietURL := fmt.Sprintf("http://127.0.0.1:%d", quietPort)

	valid := sb.createKey("valid")
	revoked := sb.createKey("revoked")
	sb.revoke(revoked.ID)
	unknown := unknownKey(t)
	secrets := keySecrets(valid.Key, revoked.Key, unknown)

	wantUpstream(t, "valid key", bearer(t, g.url+"/r?page=1", valid.Key))
	wantStatus(t, "valid key, upstream down", bearer(t, downURL+"/r?page=1", valid.Key), http.StatusBadGateway)
	for name, k := range map[string]string{"revoked": revoked.Key, "unknown": unknown} {
		wantStatus(t, name, bearer(t, g.url+"/r", k), http.StatusUnauthorized)
		wantStatus(t, name+", upstream down", bearer(t, downURL+"/r", k), http.StatusUnauthorized)
	}
	for name, k := range malformedVariants(valid.Key) {
		secrets = append(secrets, k)
		wantStatus(t, "malformed: "+name, bearer(t, g.url+"/r", k), http.StatusUnauthorized)
	}
	// X-API-Key is no default source (Caddy's logs would record it), so a
	// key sent there is refused before anything can fail and be logged.
	wantStatus(t, "key in X-API-Key, upstream down", get(t, quietURL+"/r", "X-API-Key", valid.Key), http.StatusUnauthorized)
	wantStatus(t, "valid key, upstream down, no access log", bearer(t, quietURL+"/r", valid.Key), http.StatusBadGateway)

	g.stop()
	log := g.log()
	checkLogHolds(t, log, secrets)
	// The log is the one we think it is: it has the access-log lines, the
	// error-log line of the 502 and Keygate's refusals.
	for _, parts := range [][]string{
		{"handled request", valid.ID},
		{"http.log.error", "502"},
		{"unknown API key"},
		{"revoked API key"},
		{"malformed API key"},
	} {
		if !hasLine(log, parts...) {
			t.Errorf("no log line holds %q; log:\n%s", parts, log)
		}
	}
	if strings.Contains(log, logWarning) {
		t.Errorf("the default configuration warned about its logs:\n%s", log)
	}
}

// TestRedactEncoderCoversEverySource: with the redacting encoder on the
// default logger and the access log, keys sent in a header, the query
// (plain or percent-encoded) or a cookie are masked everywhere, while the
// lines still name the key id.
func TestRedactEncoderCoversEverySource(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.debug = true
	g.globals = "\tlog {\n\t\tformat redact_api_keys\n\t}\n"
	downPort := freePort(t)
	site := func(upstream string) string {
		return fmt.Sprintf("\tlog {\n\t\tformat redact_api_keys {\n\t\t\twrap console\n\t\t}\n\t}\n\tapi_key {\n\t\t%s\n\t}\n\treverse_proxy %s",
			allSources, upstream)
	}
	g.start(g.site(site(up.hostPort()))+siteBlock(downPort, site(fmt.Sprintf("127.0.0.1:%d", deadPort(t)))), downPort)
	downURL := fmt.Sprintf("http://127.0.0.1:%d", downPort)

	revoked := sb.createKey("revoked")
	sb.revoke(revoked.ID)
	unknown := unknownKey(t)
	secrets := keySecrets(revoked.Key, unknown)
	var validIDs []string // of keys sent where Caddy itself does not redact
	for _, way := range keyWays {
		k := sb.createKey("via " + way)
		if way == "header" || way == "query" {
			validIDs = append(validIDs, k.ID)
		}
		secrets = append(secrets, keySecrets(k.Key)...)
		wantUpstream(t, "valid via "+way, sendKey(t, g.url, way, k.Key))
		wantStatus(t, "valid via "+way+", upstream down", sendKey(t, downURL, way, k.Key), http.StatusBadGateway)
		for name, bad := range map[string]string{"revoked": revoked.Key, "unknown": unknown} {
			wantStatus(t, name+" via "+way, sendKey(t, g.url, way, bad), http.StatusUnauthorized)
		}
	}
	// A percent-encoded key in the query is the same key.
	enc := sb.createKey("encoded")
	secrets = append(secrets, keySecrets(enc.Key)...)
	escaped := strings.ReplaceAll(url.QueryEscape(enc.Key), "_", "%5F")
	wantStatus(t, "encoded query key, upstream down", get(t, downURL+"/r?api_key="+escaped), http.StatusBadGateway)

	g.stop()
	log := g.log()
	checkLogHolds(t, log, secrets)
	for _, id := range validIDs {
		if !strings.Contains(log, "kg_"+id+"_REDACTED") {
			t.Errorf("no line names key %s in redacted form; log:\n%s", id, log)
		}
	}
	if !hasLine(log, "http.log.error", "502") {
		t.Errorf("the error log recorded no 502; log:\n%s", log)
	}
	if strings.Contains(log, logWarning) {
		t.Errorf("a fully redacted configuration warned:\n%s", log)
	}
}

// TestWarnsWhenLogsWouldRecordKeys: a source Caddy does not redact, with a
// log that does not redact keys, gets a warning at start that names the
// lines to add; each line added silences its part of the warning.
func TestWarnsWhenLogsWouldRecordKeys(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	const global = "in the global options: log {"
	const perSite = "in every site's log directive: log {"
	for _, c := range []struct {
		name, globals, siteLog, options string
		want, dontWant                  []string
	}{
		// A bare `log` writes to Caddy's default log, like the error log.
		{"header source, bare log", "", "log", "from header X-API-Key", []string{global}, []string{perSite}},
		{"query source, no access log", "", "", "from query api_key", []string{global}, []string{perSite}},
		{"site log of its own", "", "log {\n\t\toutput stderr\n\t}", "from header X-API-Key", []string{global, perSite}, nil},
		{"site fixed only", "", "log {\n\t\tformat redact_api_keys\n\t}", "from header X-API-Key", []string{global}, []string{perSite}},
		{"default logger fixed, bare log", "log {\n\tformat redact_api_keys\n}", "log", "from header X-API-Key", nil, []string{logWarning}},
		{"default logger fixed, site log of its own", "log {\n\tformat redact_api_keys\n}", "log {\n\t\toutput stderr\n\t}", "from header X-API-Key", []string{perSite}, []string{global}},
		{"both fixed", "log {\n\tformat redact_api_keys\n}", "log {\n\t\tformat redact_api_keys\n\t}", "from header X-API-Key", nil, []string{logWarning}},
		{"bearer only", "", "log", "from bearer", nil, []string{logWarning}},
		{"bearer with log_credentials", "servers {\n\tlog_credentials\n}", "log", "from bearer", []string{global}, nil},
		{"cookie source", "", "log", "from cookie api_key", nil, []string{logWarning}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n%s\n}\n\nhttp://127.0.0.1:%d {\n\t%s\n\tapi_key {\n\t\t%s\n\t}\n\trespond ok\n}\n",
				c.globals, freePort(t), c.siteLog, c.options)
			path := filepath.Join(t.TempDir(), "Caddyfile")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			res := sb.forTest(t).run("validate", "--config", path, "--adapter", "caddyfile")
			if res.code != 0 {
				t.Fatalf("validate failed: %s", res)
			}
			for _, w := range c.want {
				if !strings.Contains(res.stderr, w) {
					t.Errorf("no warning %q for\n%s\noutput:\n%s", w, cfg, res.stderr)
				}
			}
			for _, w := range c.dontWant {
				if strings.Contains(res.stderr, w) {
					t.Errorf("unexpected warning %q for\n%s\noutput:\n%s", w, cfg, res.stderr)
				}
			}
		})
	}
}

// TestWarnsAboutLenientTrustedProxies: behind proxies, without
// trusted_proxies_strict the client IP is whatever the client puts first
// in X-Forwarded-For, and the budget of failed checks could be escaped.
// The gateway says so when such a request is charged to the budget.
func TestWarnsAboutLenientTrustedProxies(t *testing.T) {
	t.Parallel()
	const warning = "trusted_proxies without trusted_proxies_strict"
	for _, c := range []struct {
		name, servers, options string
		want                   bool
	}{
		{"lenient", "trusted_proxies static 127.0.0.1/32", "", true},
		{"strict", "trusted_proxies static 127.0.0.1/32\n\t\ttrusted_proxies_strict", "", false},
		{"no proxies", "", "", false},
		{"budget off", "trusted_proxies static 127.0.0.1/32", "failed_auth_limit off", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			sb := newSandbox(t, sqliteStore)
			g := newGateway(t, sb)
			g.globals = fmt.Sprintf("\tservers {\n\t\t%s\n\t}\n", c.servers)
			g.start(g.site(fmt.Sprintf("\tapi_key {\n\t\t%s\n\t}\n\trespond ok", c.options)))
			for range 3 {
				wantStatus(t, "unknown key", get(t, g.url+"/", "Authorization", "Bearer "+unknownKey(t),
					"X-Forwarded-For", "203.0.113.9, 127.0.0.1"), http.StatusUnauthorized)
			}
			g.stop()
			log := g.log()
			if got := strings.Contains(log, warning); got != c.want {
				t.Errorf("warning given: %v, want %v; log:\n%s", got, c.want, log)
			}
			if strings.Count(log, warning) > 1 {
				t.Errorf("the warning was given more than once")
			}
		})
	}
}

// TestValidateTouchesNoStore: `caddy validate` checks a configuration; it
// creates no store and no pepper file, and records nothing.
func TestValidateTouchesNoStore(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	dir := filepath.Join(t.TempDir(), "new")
	cfg := fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n}\n\nhttp://127.0.0.1:%d {\n\tapi_key {\n\t\tdatabase sqlite:%s/keys.db\n\t}\n\trespond ok\n}\n",
		freePort(t), dir)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := sb.run("validate", "--config", path, "--adapter", "caddyfile"); res.code != 0 {
		t.Fatalf("validate failed: %s", res)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("validate created %s (%v)", dir, err)
	}
	// A store that exists is not written either: its pepper check stays
	// unrecorded, so a later gateway with another pepper is not refused.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sb.mustCLI("migrate", "--database", "sqlite:"+dir+"/keys.db")
	before, err := os.ReadFile(filepath.Join(dir, "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	if res := sb.run("validate", "--config", path, "--adapter", "caddyfile"); res.code != 0 {
		t.Fatalf("validate failed: %s", res)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "keys.db"))
	if !bytes.Equal(before, after) {
		t.Error("validate changed the store file")
	}
	if _, err := os.Stat(filepath.Join(dir, "keys.db.pepper")); !os.IsNotExist(err) {
		t.Errorf("validate created a pepper file (%v)", err)
	}
}
