package tests

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// TestGlobalKeygateOption: the keygate global option names the store and
// pepper once for every site; the sites share one store (one watch), and
// a site's own options still win.
func TestGlobalKeygateOption(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		database := "sqlite:" + sb.sqlitePath()
		pepper := ""
		if sb.kind == postgresStore {
			database, pepper = sb.dsn, "\t\tpepper {env.KEYGATE_PEPPER}\n"
		}
		k := sb.createKey("shared")
		up := newUpstream(t)
		g := newGateway(t, sb)
		g.globals = fmt.Sprintf("\tkeygate {\n\t\tdatabase %s\n%s\t}\n", database, pepper)
		second := freePort(t)
		other := freePort(t)
		g.start(g.site("\tapi_key\n\treverse_proxy "+up.hostPort())+
			siteBlock(second, "\tapi_key\n\treverse_proxy "+up.hostPort())+
			// A site with a store of its own: the global one does not apply.
			siteBlock(other, fmt.Sprintf("\tapi_key {\n\t\tdatabase sqlite:%s/other.db\n\t}\n\trespond ok", sb.dir)),
			second, other)

		for _, url := range []string{g.url, fmt.Sprintf("http://127.0.0.1:%d", second)} {
			wantUpstream(t, "a key on "+url, bearer(t, url+"/", k.Key))
		}
		wantStatus(t, "the key on the site with its own store", bearer(t, fmt.Sprintf("http://127.0.0.1:%d/", other), k.Key), http.StatusUnauthorized)
		if n := strings.Count(g.log(), `"msg":"watching key store for changes","database":"`+keystore.RedactDSN(database)); n != 1 {
			t.Errorf("the global store was opened %d times, want once; log:\n%s", n, g.log())
		}
	})
}

// TestCountersSurviveReload: a reload that replaces the cache and the
// usage recorder (their settings changed) keeps every counter where it
// was: the old ones' counts are kept, not dropped.
func TestCountersSurviveReload(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	k := sb.createKey("k")
	g := newGateway(t, sb)
	site := func(ttl string) string {
		return g.site(fmt.Sprintf("\tapi_key {\n\t\tcache {\n\t\t\tttl %s\n\t\t}\n\t}\n\treverse_proxy %s", ttl, up.hostPort()))
	}
	g.globals = "\tkeygate {\n\t\tusage {\n\t\t\tflush_interval 200ms\n\t\t}\n\t}\n"
	g.start(site("30s"))
	for i := 0; i < 5; i++ {
		wantUpstream(t, "a request", bearer(t, g.url+"/", k.Key))
	}
	series := []string{`caddy_api_key_cache_lookups_total{result="hit"}`, `caddy_api_key_cache_lookups_total{result="miss"}`,
		"caddy_api_key_store_queries_total", "caddy_api_key_usage_recorded_total"}
	before := metrics(t, g)
	// New cache settings and new usage settings: a new cache and recorder.
	g.globals = "\tkeygate {\n\t\tusage {\n\t\t\tflush_interval 300ms\n\t\t}\n\t}\n"
	if res := g.reload(site("31s")); res.code != 0 {
		t.Fatalf("reload: %s", res)
	}
	after := metrics(t, g)
	for _, s := range series {
		if before[s] == 0 || after[s] < before[s] {
			t.Errorf("%s: %v before the reload, %v after", s, before[s], after[s])
		}
	}
	if before["caddy_api_key_usage_recorded_total"] != 5 {
		t.Errorf("usage recorded %v, want 5", before["caddy_api_key_usage_recorded_total"])
	}
	// The replaced recorder wrote its counts when it was closed.
	if w := after["caddy_api_key_usage_written_total"]; w != 5 {
		t.Errorf("usage written after the reload: %v, want 5", w)
	}
}

// TestMetricsCountWhatHappened: after a known mix of requests, /metrics
// shows exactly that mix: results, cache answers, store queries, usage
// counted and written, and the audit chain's length; the security log
// has one line per refusal and no key.
func TestMetricsCountWhatHappened(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	reader := sb.createKey("reader", "--scopes", "read")
	other := sb.createKey("other")
	g := newGateway(t, sb)
	g.globals = "\tkeygate {\n\t\tusage {\n\t\t\tflush_interval 200ms\n\t\t}\n\t}\n"
	g.start(apiKeySite(g, up, "scopes read"))

	unknown := unknownKey(t)
	for i := 0; i < 3; i++ {
		wantUpstream(t, "a key with the scope", bearer(t, g.url+"/", reader.Key))
	}
	wantStatus(t, "a key without the scope", bearer(t, g.url+"/", other.Key), http.StatusForbidden)
	for i := 0; i < 2; i++ {
		wantStatus(t, "no key", get(t, g.url+"/"), http.StatusUnauthorized)
		wantStatus(t, "an unknown key", bearer(t, g.url+"/", unknown), http.StatusUnauthorized)
	}
	wantStatus(t, "a malformed key", bearer(t, g.url+"/", reader.Key+"x"), http.StatusUnauthorized)
	wantStatus(t, "a malformed key", bearer(t, g.url+"/", "kg_short"), http.StatusUnauthorized)

	want := map[string]float64{
		`caddy_api_key_requests_total{result="ok"}`:                 3,
		`caddy_api_key_requests_total{result="insufficient_scope"}`: 1,
		`caddy_api_key_requests_total{result="missing_key"}`:        2,
		`caddy_api_key_requests_total{result="invalid_key"}`:        4,
		`caddy_api_key_requests_total{result="store_unavailable"}`:  0,
		`caddy_api_key_cache_lookups_total{result="miss"}`:          3, // reader, other, unknown
		`caddy_api_key_cache_lookups_total{result="hit"}`:           2,
		`caddy_api_key_cache_lookups_total{result="negative"}`:      1,
		`caddy_api_key_store_queries_total`:                         3,
		`caddy_api_key_store_errors_total`:                          0,
		`caddy_api_key_usage_recorded_total`:                        4, // the keys the store knows
		`caddy_api_key_usage_written_total`:                         4,
		`caddy_api_key_usage_dropped_total`:                         0,
		`caddy_api_key_audit_events`:                                2, // two keys created
	}
	var got map[string]float64
	// Usage is written every 200ms.
	pollUntil(10*time.Second, 100*time.Millisecond, func() bool {
		got = metrics(t, g)
		return got[`caddy_api_key_usage_written_total`] == 4
	})
	for series, v := range want {
		if got[series] != v {
			t.Errorf("%s = %v, want %v", series, got[series], v)
		}
	}
	log := g.log()
	if n := strings.Count(log, `"msg":"api key refused"`); n != 7 {
		t.Errorf("%d refusal lines in the log, want 7", n)
	}
	for _, k := range []string{reader.Key, other.Key, unknown} {
		if strings.Contains(log, secretOf(k)) {
			t.Fatalf("a key's secret is in the gateway's log")
		}
	}
}
