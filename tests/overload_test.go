package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// createSettled creates a key and waits until the gateway has seen the
// creation through its change watch: the watch invalidates the new key's
// digest (harmless, but it costs a store query if the key was used in
// between), and tests that count store queries must not count that one.
func createSettled(t testing.TB, sb *sandbox, g *gateway, name string) issuedKey {
	t.Helper()
	before := metric(t, g, "caddy_api_key_cache_invalidations_total")
	k := sb.createKey(name)
	if ok, _ := pollUntil(10*time.Second, 10*time.Millisecond, func() bool {
		return metric(t, g, "caddy_api_key_cache_invalidations_total") > before
	}); !ok {
		t.Fatalf("the gateway never saw the creation of key %s", k.ID)
	}
	return k
}

// loadClient has many connections, so that a burst really is concurrent.
func loadClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 2000, MaxIdleConnsPerHost: 2000, IdleConnTimeout: 10 * time.Second,
	}}
}

func status(client *http.Client, url, key string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// TestConcurrentMissesMakeOneQuery sends 1,000 requests with one uncached
// key at once: they must make exactly one store query between them. On
// PostgreSQL a held table lock keeps that query waiting until all 1,000
// have missed the cache, so the test proves they overlapped.
func TestConcurrentMissesMakeOneQuery(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		// A thousand connections at once to a loaded machine: the upstream
		// may take longer than reverse_proxy's default 3s to accept one,
		// which this test is not about.
		g.start(g.site(fmt.Sprintf("\tapi_key {\n\t\t%s\n\t\tstore_timeout 20s\n\t\tcache {\n\t\t\tttl 1h\n\t\t}\n\t}\n"+
			"\treverse_proxy %s {\n\t\ttransport http {\n\t\t\tdial_timeout 30s\n\t\t}\n\t}", sb.storeOptions(), up.hostPort())))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		k := createSettled(t, sb, g, "burst")

		var release func()
		if sb.kind == postgresStore {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			conn, err := pgx.Connect(ctx, sb.dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "LOCK TABLE keygate_keys IN ACCESS EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			release = func() { once.Do(func() { tx.Rollback(ctx) }) }
			defer release()
		}

		queries := metric(t, g, "caddy_api_key_store_queries_total")
		misses := metric(t, g, `caddy_api_key_cache_lookups_total{result="miss"}`)
		const n = 1000
		client := loadClient()
		start := make(chan struct{})
		codes := make([]int, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				codes[i], errs[i] = status(client, g.url+"/", k.Key)
			}()
		}
		close(start)
		if release != nil {
			ok, _ := pollUntil(30*time.Second, 20*time.Millisecond, func() bool {
				return metric(t, g, `caddy_api_key_cache_lookups_total{result="miss"}`)-misses >= n
			})
			if !ok {
				t.Errorf("only %.0f of %d requests reached the cache while the store was held",
					metric(t, g, `caddy_api_key_cache_lookups_total{result="miss"}`)-misses, n)
			}
			release()
		}
		wg.Wait()
		for i := range codes {
			if errs[i] != nil || codes[i] != http.StatusOK {
				t.Fatalf("request %d: status %d, error %v; gateway log:\n%s", i, codes[i], errs[i], g.log())
			}
		}
		if q := metric(t, g, "caddy_api_key_store_queries_total") - queries; q != 1 {
			t.Fatalf("%d concurrent requests for one uncached key made %.0f store queries, want 1", n, q)
		}
	})
}

// TestRandomKeyFlood: malformed keys never reach the store, each distinct
// well-formed unknown key costs exactly one store query per negative TTL
// however often it is sent, and a valid key keeps being served.
func TestRandomKeyFlood(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		// This test counts the store queries of a flood; the budget of
		// failed checks per client would stop it early.
		g.start(apiKeySite(g, up, "failed_auth_limit off\n\t\tcache {\n\t\t\tttl 1h\n\t\t\tnegative_ttl 10m\n\t\t}"))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		valid := createSettled(t, sb, g, "real customer")
		if code, err := status(httpClient, g.url+"/", valid.Key); err != nil || code != 200 {
			t.Fatalf("valid key before the flood: %d %v", code, err)
		}

		const distinct, repeats, workers = 300, 4, 16
		unknown := make([]string, distinct)
		for i := range unknown {
			unknown[i] = unknownKey(t)
		}
		malformed := make([]string, distinct)
		for i := range malformed {
			malformed[i] = unknown[i][:len(unknown[i])-1] + "!"
		}
		queries := metric(t, g, "caddy_api_key_store_queries_total")

		client := loadClient()
		jobs := make(chan string, workers)
		var validOK, validBad, refused, other atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for key := range jobs {
					code, err := status(client, g.url+"/", key)
					switch {
					case key == valid.Key && err == nil && code == 200:
						validOK.Add(1)
					case key == valid.Key:
						validBad.Add(1)
					case err == nil && code == 401:
						refused.Add(1)
					default:
						other.Add(1)
					}
				}
			}()
		}
		for r := 0; r < repeats; r++ {
			for i := 0; i < distinct; i++ {
				jobs <- unknown[i]
				jobs <- malformed[i]
				if i%10 == 0 {
					jobs <- valid.Key
				}
			}
		}
		close(jobs)
		wg.Wait()

		if validBad.Load() != 0 || validOK.Load() != repeats*distinct/10 {
			t.Errorf("valid key during the flood: %d served, %d not", validOK.Load(), validBad.Load())
		}
		if want := int64(2 * distinct * repeats); refused.Load() != want || other.Load() != 0 {
			t.Errorf("flood keys: %d refused with 401, %d other answers; want %d refused", refused.Load(), other.Load(), want)
		}
		q := metric(t, g, "caddy_api_key_store_queries_total") - queries
		if q != distinct {
			t.Fatalf("%d distinct unknown keys sent %d times each (plus as many malformed) made %.0f store queries, want %d",
				distinct, repeats, q, distinct)
		}
		t.Logf("%d flood requests, %.0f store queries", 2*distinct*repeats, q)
	})
}

// TestReloadsUnderLoad: 20 reloads while a load runs fail no request with
// a valid key, keep the cache (no new store queries), and leave the
// process with as many goroutines and open files as before.
func TestReloadsUnderLoad(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		site := func(i int) string {
			// Each config differs (a header), so every reload really
			// replaces the running config; the api_key settings stay the
			// same, so the store and cache must carry over.
			// The short upstream keep-alive matters for the resource
			// check: each reload's reverse_proxy has a connection pool of
			// its own, and connections busy when it is retired go idle
			// there until Caddy's default idle timeout (2m) closes them.
			// That is reverse_proxy's, not Keygate's.
			// The long cache TTL keeps a slow (race-built) run from seeing
			// a refresh that is not a reload's doing.
			return g.site(fmt.Sprintf("\theader X-Config %d\n\tapi_key {\n\t\t%s\n\t\tcache {\n\t\t\tttl 1h\n\t\t}\n\t}\n\treverse_proxy %s {\n\t\ttransport http {\n\t\t\tkeepalive 100ms\n\t\t}\n\t}",
				i, sb.storeOptions(), up.hostPort()))
		}
		g.start(site(0))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		k := createSettled(t, sb, g, "steady")
		if code, err := status(httpClient, g.url+"/", k.Key); err != nil || code != 200 {
			t.Fatalf("before reloads: %d %v", code, err)
		}
		// One reload first: whatever Caddy starts once on its first
		// reload is not a leak.
		if res := g.reload(site(1)); res.code != 0 {
			t.Fatalf("reload: %s", res)
		}
		settle := func() (goroutines, fds float64) {
			// Idle keep-alive connections hold goroutines and files;
			// close ours and wait until Caddy's counts stop moving.
			httpClient.CloseIdleConnections()
			var lastG, lastF float64 = -1, -1
			steady := 0
			pollUntil(5*time.Second, 50*time.Millisecond, func() bool {
				goroutines, fds = metric(t, g, "go_goroutines"), metric(t, g, "process_open_fds")
				if goroutines == lastG && fds == lastF {
					steady++
				} else {
					steady = 0
				}
				lastG, lastF = goroutines, fds
				return steady >= 3
			})
			return goroutines, fds
		}
		// The same load without reloads first, so that what load alone
		// opens (the store's connection pool growing to its size) is in
		// the baseline, and only what reloads leave behind is counted.
		warm := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
		var warmWG sync.WaitGroup
		for w := 0; w < 8; w++ {
			warmWG.Add(1)
			go func() {
				defer warmWG.Done()
				for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
					status(warm, g.url+"/", k.Key)
				}
			}()
		}
		warmWG.Wait()
		warm.CloseIdleConnections()
		baseG, baseF := settle()
		queries := metric(t, g, "caddy_api_key_store_queries_total")

		client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
		fresh := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var ok, resets atomic.Int64
		var failures sync.Map
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100000; i++ { // bounded; stop ends it sooner
					select {
					case <-stop:
						return
					default:
					}
					// A connection reset before any answer comes from
					// Caddy's listener handover on reload, not from the
					// handler; a client retries it. An HTTP answer other
					// than 200 is never retried.
					// The retry takes a new connection: every idle one may
					// have been closed by the same handover.
					code, err := status(client, g.url+"/", k.Key)
					for attempt := 0; attempt < 2 && err != nil; attempt++ {
						resets.Add(1)
						code, err = status(fresh, g.url+"/", k.Key)
					}
					if err != nil || code != 200 {
						failures.Store(fmt.Sprint(w, "/", i), fmt.Sprint(code, " ", err))
						continue
					}
					ok.Add(1)
				}
			}()
		}
		for i := 2; i < 22; i++ {
			if res := g.reload(site(i)); res.code != 0 {
				close(stop)
				wg.Wait()
				t.Fatalf("reload %d: %s\nlog:\n%s", i-1, res, g.log())
			}
		}
		// Some requests on the last config before stopping.
		served := ok.Load()
		pollUntil(10*time.Second, 10*time.Millisecond, func() bool { return ok.Load() > served+10 })
		close(stop)
		wg.Wait()
		client.CloseIdleConnections()

		failures.Range(func(k, v any) bool {
			t.Errorf("request %v failed: %v", k, v)
			return true
		})
		if ok.Load() == 0 {
			t.Fatal("no request was served during the reloads")
		}
		if q := metric(t, g, "caddy_api_key_store_queries_total") - queries; q != 0 {
			t.Errorf("reloads emptied the cache: %.0f store queries for a cached key", q)
		}
		var gor, fds float64
		back, _ := pollUntil(15*time.Second, 100*time.Millisecond, func() bool {
			gor, fds = settle()
			// A leak of one file per reload would show as 20 more. The
			// store's connection pool may still open a few it had not
			// needed during the warm-up (each SQLite connection holds two
			// files), which is not a leak.
			return gor <= baseG+2 && fds <= baseF+8
		})
		t.Logf("%d requests served across 20 reloads (%d connection resets retried); goroutines %.0f -> %.0f, open files %.0f -> %.0f",
			ok.Load(), resets.Load(), baseG, gor, baseF, fds)
		if !back {
			t.Fatalf("after 20 reloads: %.0f goroutines (was %.0f), %.0f open files (was %.0f)", gor, baseG, fds, baseF)
		}
	})
}
