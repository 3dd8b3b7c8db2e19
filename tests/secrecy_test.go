package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The ways a client can send a key when every source is configured.
var keyWays = []string{"bearer", "header", "query", "cookie"}

const allSources = "from bearer\n\t\tfrom header X-API-Key\n\t\tfrom query api_key\n\t\tfrom cookie api_key"

// sendKey sends key to base the given way, next to harmless companions
// (another parameter, another cookie) so that filters have work to do.
func sendKey(t testing.TB, base, way, key string) response {
	t.Helper()
	switch way {
	case "bearer":
		return get(t, base+"/r?page=1", "Authorization", "Bearer "+key)
	case "header":
		return get(t, base+"/r?page=1", "X-API-Key", key)
	case "query":
		return get(t, base+"/r?page=1&api_key="+url.QueryEscape(key))
	case "cookie":
		return get(t, base+"/r?page=1", "Cookie", "session=s1; api_key="+key)
	}
	t.Fatalf("unknown way %q", way)
	return response{}
}

// logFilter is the access-log block of Caddyfile.example.
const logFilter = `	log {
		format filter {
			wrap console
			fields {
				request>headers>X-Api-Key delete
				request>uri query {
					delete api_key
				}
			}
		}
	}
`

func TestKeysNeverLogged(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		g.debug = true
		// A second site whose store is down: refusals with 503 are logged
		// too, with the store's error.
		downPort := freePort(t)
		down := siteBlock(downPort, logFilter+fmt.Sprintf(
			"\tapi_key {\n\t\tdatabase postgres://postgres@127.0.0.1:%d/x\n\t\tpepper %s\n\t\t%s\n\t}\n\treverse_proxy %s",
			freePort(t), randomPepper(), allSources, up.hostPort()))
		main := g.site(logFilter + fmt.Sprintf("\tapi_key {\n\t\t%s\n\t\t%s\n\t}\n\treverse_proxy %s",
			sb.storeOptions(), allSources, up.hostPort()))
		g.start(main+down, downPort)

		valid := map[string]issuedKey{}
		for _, way := range keyWays {
			valid[way] = sb.createKey("via " + way)
		}
		revoked := sb.createKey("revoked")
		sb.revoke(revoked.ID)
		unknown := unknownKey(t)
		// Every key string sent, and the secrets that must not appear
		// even inside another string.
		secrets := []string{revoked.Key, unknown, secretOf(revoked.Key), secretOf(unknown)}
		refused := map[string]string{"revoked": revoked.Key, "unknown": unknown}
		for name, k := range malformedVariants(valid["bearer"].Key) {
			refused["malformed: "+name] = k
			secrets = append(secrets, k)
		}

		for _, way := range keyWays {
			k := valid[way]
			secrets = append(secrets, k.Key, secretOf(k.Key))
			wantUpstream(t, "valid key via "+way, sendKey(t, g.url, way, k.Key))
			for name, bad := range refused {
				wantStatus(t, name+" via "+way, sendKey(t, g.url, way, bad), http.StatusUnauthorized)
			}
			downURL := fmt.Sprintf("http://127.0.0.1:%d", downPort)
			for name, key := range map[string]string{"valid": k.Key, "unknown": unknown} {
				wantStatus(t, name+" key via "+way+" during a store outage", sendKey(t, downURL, way, key), http.StatusServiceUnavailable)
			}
		}

		// Stop first, so that everything Caddy had to say is in the file.
		g.stop()
		log := g.log()
		for _, s := range secrets {
			if i := strings.Index(log, s); i >= 0 {
				t.Errorf("the log contains a key or secret %q:\n%s", s, lineAt(log, i))
			}
		}
		// The log is the one we think it is: access-log lines name the
		// accepted keys, and the refusals were logged at debug level.
		for way, k := range valid {
			if !hasLine(log, "handled request", `"user_id": "`+k.ID+`"`, `"api_key_id": "`+k.ID+`"`) {
				t.Errorf("no access-log line names the key sent via %s (%s); log:\n%s", way, k.ID, log)
			}
		}
		for _, msg := range []string{"malformed API key", "unknown API key", "revoked API key", "key store unavailable"} {
			if !strings.Contains(log, msg) {
				t.Errorf("the log lacks %q, so refusals were not captured; log:\n%s", msg, log)
			}
		}
	})
}

// hasLine reports whether one line of log contains every part.
func hasLine(log string, parts ...string) bool {
	for line := range strings.SplitSeq(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// lineAt returns the line of s that holds byte i.
func lineAt(s string, i int) string {
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end := strings.IndexByte(s[i:], '\n')
	if end < 0 {
		return s[start:]
	}
	return s[start : i+end]
}

func TestDatabaseDumpHoldsNoKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, ""))
		keys := []issuedKey{
			sb.createKey("plain"),
			sb.createKey("rich", "--owner", "acme", "--scopes", "orders:read", "--metadata", "team=billing", "--expires", "30d"),
			sb.createKey("to revoke"),
		}
		for _, k := range keys {
			wantUpstream(t, k.Name, bearer(t, g.url+"/", k.Key))
		}
		sb.revoke(keys[2].ID)

		dump := sb.dump(g)
		for _, k := range keys {
			if strings.Contains(dump, k.Key) || strings.Contains(dump, secretOf(k.Key)) {
				t.Errorf("the store dump contains key %s or its secret", k.ID)
			}
			if !strings.Contains(dump, k.ID) {
				t.Errorf("the store dump lacks key id %s: is it the right database?", k.ID)
			}
		}
	})
}
