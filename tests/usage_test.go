package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// statusUpstream answers /status/N with status N and a body of 100 bytes.
func statusUpstream(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		if err != nil {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		io.WriteString(w, strings.Repeat("x", 100))
	}))
	t.Cleanup(s.Close)
	return s
}

// usageTally is what clients saw per key: requests by status class.
type usageTally struct {
	mu sync.Mutex
	m  map[string]*[5]int64 // key id -> 1xx..5xx
}

func (u *usageTally) add(id string, status int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]*[5]int64{}
	}
	if u.m[id] == nil {
		u.m[id] = &[5]int64{}
	}
	u.m[id][status/100-1]++
}

// usageSite: two routes, one needing a scope the keys lack (Keygate's
// own 403 for a known key), both proxied to up.
func usageSite(g *gateway, up string, tag int) string {
	return g.site(fmt.Sprintf("\theader X-Config %d\n\thandle /admin/* {\n\t\tapi_key {\n\t\t\t%s\n\t\t\tscopes admin\n\t\t}\n\t\treverse_proxy %s\n\t}\n\thandle {\n\t\tapi_key {\n\t\t\t%s\n\t\t}\n\t\treverse_proxy %s\n\t}",
		tag, g.sb.storeOptions(), up, g.sb.storeOptions(), up))
}

// sendMixed sends n requests per key through g, cycling through
// statuses, each on a new connection (a reload's listener handover must
// not lose a request the test then cannot account for), and tallies what
// the clients got.
func sendMixed(t *testing.T, g *gateway, keys []issuedKey, n int, tally *usageTally) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	paths := []string{"/status/200", "/status/204", "/status/302", "/status/404", "/status/500", "/admin/x"}
	for i := 0; i < n; i++ {
		for _, k := range keys {
			path := paths[i%len(paths)]
			req, _ := http.NewRequest(http.MethodPost, g.url+path, strings.NewReader("0123456789"))
			req.Header.Set("Authorization", "Bearer "+k.Key)
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("request %d of %s: %v", i, k.Name, err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			tally.add(k.ID, res.StatusCode)
		}
	}
}

// storedUsage is what `caddy api-key usage ID --json` reports, summed.
func storedUsage(t *testing.T, sb *sandbox, id string) (classes [5]int64, requests, bytesIn, bytesOut int64) {
	t.Helper()
	res := sb.mustCLI("usage", id, "--since", "2h", "--by", "day", "--json")
	var buckets []map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &buckets); err != nil {
		t.Fatalf("usage --json: %v\n%s", err, res)
	}
	for _, b := range buckets {
		for i, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
			classes[i] += int64(b[c].(float64))
		}
		requests += int64(b["requests"].(float64))
		bytesIn += int64(b["bytes_in"].(float64))
		bytesOut += int64(b["bytes_out"].(float64))
	}
	return
}

func checkUsage(t *testing.T, sb *sandbox, keys []issuedKey, tally *usageTally) {
	t.Helper()
	for _, k := range keys {
		want := *tally.m[k.ID]
		got, requests, in, _ := storedUsage(t, sb, k.ID)
		var n int64
		for _, v := range want {
			n += v
		}
		if got != want || requests != n {
			t.Errorf("key %s: stored %v (%d requests), clients saw %v (%d)", k.Name, got, requests, want, n)
		}
		// Every request sent a 10-byte body; refused ones were not read.
		if in <= 0 || in > 10*n {
			t.Errorf("key %s: %d request bytes for %d requests", k.Name, in, n)
		}
		t.Logf("key %s: %d requests stored by class %v", k.Name, n, got)
	}
}

// TestUsageLossless: requests of several keys and status classes, with a
// reload, a PostgreSQL restart and a graceful stop in the middle; the
// stored usage adds up to exactly what the clients saw, per key and class.
func TestUsageLossless(t *testing.T) {
	t.Parallel()
	for _, kind := range []storeKind{sqliteStore, postgresStore} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			var sb *sandbox
			var cluster *pgtest.Cluster
			if kind == postgresStore {
				cluster = pgtest.StartCluster(t)
				sb = pgSandbox(t, cluster.CreateDatabase(t, "keygate"), randomPepper())
			} else {
				sb = newSandbox(t, sqliteStore)
			}
			up := statusUpstream(t)
			upHost := strings.TrimPrefix(up.URL, "http://")
			keys := []issuedKey{sb.createKey("k1", "--owner", "acme"), sb.createKey("k2", "--owner", "acme"), sb.createKey("k3")}
			var tally usageTally
			g := newGateway(t, sb)
			// A long cache: during the outage the keys are served from it.
			g.globals = "\tkeygate {\n\t\tusage {\n\t\t\tflush_interval 300ms\n\t\t}\n\t}\n"
			g.start(usageSite(g, upHost, 1))
			sendMixed(t, g, keys, 12, &tally)

			if res := g.reload(usageSite(g, upHost, 2)); res.code != 0 {
				t.Fatalf("reload: %s", res)
			}
			sendMixed(t, g, keys, 12, &tally)

			if cluster != nil {
				cluster.Stop(t)
				// Requests while the store is down: served from the cache,
				// counted in memory; flushes fail and are retried.
				sendMixed(t, g, keys, 12, &tally)
				waitForLog(t, g, "usage counts not written yet", 1, 10*time.Second)
				cluster.Start(t)
				waitForLog(t, g, "usage counts written again", 1, 30*time.Second)
				sendMixed(t, g, keys, 6, &tally)
			}

			// A graceful stop writes what is left; a new gateway goes on.
			sendMixed(t, g, keys, 6, &tally)
			g.stop()
			if strings.Contains(g.log(), "usage counts lost") {
				t.Fatalf("usage lost at a graceful stop:\n%s", g.log())
			}
			g2 := newGateway(t, sb)
			g2.globals = g.globals
			g2.start(usageSite(g2, upHost, 3))
			sendMixed(t, g2, keys, 6, &tally)
			if dropped := metric(t, g2, "caddy_api_key_usage_dropped_total"); dropped != 0 {
				t.Errorf("%v requests dropped", dropped)
			}
			g2.stop()
			checkUsage(t, sb, keys, &tally)

			// The logs of both gateways hold no key.
			for _, k := range keys {
				for _, log := range []string{g.log(), g2.log()} {
					if strings.Contains(log, secretOf(k.Key)) {
						t.Fatalf("a key's secret is in the gateway's log")
					}
				}
			}
			// show says when the key was last used.
			if res := sb.mustCLI("show", keys[0].ID); !strings.Contains(res.stdout, "Last used:") || strings.Contains(res.stdout, "Last used:  -") {
				t.Errorf("show lacks the last use:\n%s", res.stdout)
			}
		})
	}
}

// TestUsageKilledLosesAtMostOneFlush: a gateway killed outright (SIGKILL)
// loses the counts of at most its last flush interval. Every request
// answered before the last flush interval (plus a second's slack for a
// loaded machine) must be stored.
func TestUsageKilledLosesAtMostOneFlush(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := statusUpstream(t)
	k := sb.createKey("k")
	g := newGateway(t, sb)
	const flush = time.Second
	g.globals = "\tkeygate {\n\t\tusage {\n\t\t\tflush_interval 1s\n\t\t}\n\t}\n"
	g.start(g.site("\tapi_key\n\treverse_proxy " + strings.TrimPrefix(up.URL, "http://")))
	client := &http.Client{Timeout: 10 * time.Second}
	var answered []time.Time
	for start := time.Now(); time.Since(start) < 3500*time.Millisecond && len(answered) < 100000; {
		if code, err := status(client, g.url+"/", k.Key); err != nil || code != http.StatusOK {
			t.Fatalf("request: %d %v", code, err)
		}
		answered = append(answered, time.Now())
	}
	g.cmd.Process.Kill()
	killed := time.Now()
	<-g.exited
	_, stored, _, _ := storedUsage(t, sb, k.ID)
	early := 0
	for _, at := range answered {
		if at.Before(killed.Add(-flush - time.Second)) {
			early++
		}
	}
	lost := int64(len(answered)) - stored
	t.Logf("SIGKILL after %d requests: %d stored, %d lost (flush interval %v; %d answered before the last %v)",
		len(answered), stored, lost, flush, early, flush+time.Second)
	if stored < int64(early) || stored > int64(len(answered)) {
		t.Fatalf("stored %d of %d requests; every one of the %d answered before the last flush interval must be stored",
			stored, len(answered), early)
	}
}
