package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
)

// clientFrom returns an HTTP client whose connections come from the given
// loopback address, so that the gateway sees another client IP. Only for
// a few connections: a socket bound to an address before it connects
// keeps its port from every other connection until its TIME_WAIT ends,
// while one the kernel places (no local address, which is 127.0.0.1 for
// loopback) can be reused at once.
func clientFrom(ip string, timeout time.Duration, conns int) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if ip != "127.0.0.1" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: d.DialContext, MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 10 * time.Second,
	}}
}

// flood sends well-formed random keys from workers goroutines until ctx
// ends or limit requests were sent, and tallies the answers (0 = no answer:
// the client gave up or the connection failed).
type flood struct {
	mu     sync.Mutex
	counts map[int]int
	sent   atomic.Int64
	wg     sync.WaitGroup
}

func startFlood(ctx context.Context, client *http.Client, url string, workers int, limit int64) *flood {
	f := &flood{counts: map[int]int{}}
	for range workers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for ctx.Err() == nil && f.sent.Add(1) <= limit {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+randomKey())
				code := 0
				if res, err := client.Do(req); err == nil {
					code = res.StatusCode
					res.Body.Close()
				}
				f.mu.Lock()
				f.counts[code]++
				f.mu.Unlock()
			}
		}()
	}
	return f
}

func (f *flood) wait() map[int]int {
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts
}

var defaultFormat, _ = keystore.NewFormat("")

// metricsNoFail reads the gateway's metrics, or none, without failing the
// test: for goroutines other than the test's own.
func metricsNoFail(g *gateway) map[string]float64 {
	out := map[string]float64{}
	res, err := httpClient.Get("http://" + g.admin + "/metrics")
	if err != nil {
		return out
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(body), "\n") {
		if i := strings.LastIndexByte(line, ' '); i > 0 && !strings.HasPrefix(line, "#") {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = v
			}
		}
	}
	return out
}

// randomKey is a well-formed key no store holds (the checksum is public,
// so anyone can make these).
func randomKey() string {
	k, _, err := defaultFormat.Generate()
	if err != nil {
		panic(err)
	}
	return k
}

// peakGoroutines samples the gateway's goroutine count until stop closes
// and returns the highest it saw.
func peakGoroutines(t *testing.T, g *gateway, stop <-chan struct{}) <-chan float64 {
	out := make(chan float64, 1)
	go func() {
		peak := 0.0
		for {
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(100 * time.Millisecond):
			}
			if v, ok := metricsNoFail(g)["go_goroutines"]; ok && v > peak {
				peak = v
			}
		}
	}()
	return out
}

// TestFloodCannotStarveRealKeys: a database 5ms away, four query slots,
// and 1,200 clients at once sending well-formed random keys from one
// address. Real keys, never cached, sent from another address meanwhile
// all get through: the flooding client is out of its budget of failed
// checks after its burst and costs no more store queries. Without the
// budget, the flood keeps every slot busy: real keys may then be refused
// with 503, but that is never counted or logged as a store outage, and
// lookups whose clients left are cancelled, so the gateway's goroutines
// follow its open connections, not the request rate.
//
// It does not run in parallel with other tests: it takes the whole machine
// for a few seconds, and would fail their timing, not its own.
func TestFloodCannotStarveRealKeys(t *testing.T) {
	sb := newSandbox(t, postgresStore)
	u, err := url.Parse(sb.dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := pgtest.NewProxy(t, u.Host)
	proxy.SetDelay(5 * time.Millisecond)
	u.Host = proxy.Addr
	up := newUpstream(t)
	g := newGateway(t, sb)
	site := func(options string) string {
		// A deadline long enough that no query misses it on a loaded
		// machine: any store error counted is then a wait taken for one.
		return fmt.Sprintf("\tapi_key {\n\t\tdatabase %s\n\t\tpepper {env.KEYGATE_PEPPER}\n\t\tmax_store_queries 4\n\t\tstore_timeout 10s\n\t\t%s\n\t}\n\treverse_proxy %s",
			u.String(), options, up.hostPort())
	}
	offPort := freePort(t)
	g.start(g.site(site(""))+siteBlock(offPort, site("failed_auth_limit off")), offPort)
	waitForLog(t, g, watchingLog, 1, startTimeout)
	offURL := fmt.Sprintf("http://127.0.0.1:%d", offPort)

	const realKeys = 30
	// Four CLI processes at a time: each start of a race-enabled binary
	// takes seconds, and the measurement below does not begin until all
	// keys exist.
	keys := make([]issuedKey, realKeys)
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				keys[i] = sb.createKey(fmt.Sprintf("real %d", i))
			}
		}()
	}
	for i := range realKeys {
		work <- i
	}
	close(work)
	wg.Wait()
	for i, k := range keys {
		if k.Key == "" {
			t.Fatalf("real key %d was not created", i)
		}
	}
	// Waits for the gateway to see the creations, so that their
	// invalidations land before the measurement.
	time.Sleep(time.Second)
	real := clientFrom("127.0.0.2", 30*time.Second, realKeys)

	// sendReal sends every real key once, one after the other, as one
	// client with several keys would, and tallies the answers.
	sendReal := func(base string, ks []issuedKey) map[int]int {
		out := map[int]int{}
		for _, k := range ks {
			code, err := status(real, base+"/", k.Key)
			if err != nil {
				code = 0
			}
			out[code]++
		}
		return out
	}

	// With the default budget.
	baseline := metric(t, g, "go_goroutines")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	fl := startFlood(ctx, clientFrom("127.0.0.1", 30*time.Second, 1200), g.url+"/", 1200, 200_000)
	for fl.sent.Load() < 5000 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	got := sendReal(g.url, keys[:realKeys/2])
	cancel()
	floodCounts := fl.wait()
	t.Logf("budget on: real keys from another address: %v; flood answers: %v", got, floodCounts)
	if lg := g.log(); strings.Contains(lg, "key store unavailable") {
		i := strings.Index(lg, "key store unavailable")
		t.Logf("store error: %s", lineAt(lg, i))
	}
	for _, m := range []string{"caddy_api_key_store_queries_total", "caddy_api_key_store_errors_total", "caddy_api_key_store_busy_total", "caddy_api_key_store_abandoned_total"} {
		t.Logf("%s %v", m, metric(t, g, m))
	}
	if got[http.StatusOK] != realKeys/2 {
		t.Errorf("real keys during a flood from another address: %v, want all %d answered 200", got, realKeys/2)
	}
	if floodCounts[http.StatusTooManyRequests] == 0 {
		t.Errorf("the flooding client was never refused with 429: %v", floodCounts)
	}

	// Without the budget, with clients that give up after 20ms.
	errorsBefore := metric(t, g, "caddy_api_key_store_errors_total")
	stop := make(chan struct{})
	peak := peakGoroutines(t, g, stop)
	ctx, cancel = context.WithTimeout(context.Background(), 8*time.Second)
	// Every abandoned request costs a connection left in TIME_WAIT: keep
	// their number well below the ports a machine has.
	// Half the clients wait for their answers (they keep the query slots
	// and the queue full), half give up after 100ms.
	fl = startFlood(ctx, clientFrom("127.0.0.1", 30*time.Second, 600), offURL+"/", 600, 4_000)
	quitters := startFlood(ctx, clientFrom("127.0.0.1", 100*time.Millisecond, 600), offURL+"/", 600, 4_000)
	for fl.sent.Load()+quitters.sent.Load() < 3000 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	got = sendReal(offURL, keys[realKeys/2:])
	floodCounts = fl.wait()
	for code, n := range quitters.wait() {
		floodCounts[code] += n
	}
	cancel()
	close(stop)
	peakSeen := <-peak
	busy := metric(t, g, "caddy_api_key_store_busy_total")
	t.Logf("budget off: real keys from another address: %v; flood answers (0 = client gave up): %v; "+
		"lookups refused as busy: %v; goroutines: %v before, peak %v", got, floodCounts, busy, baseline, peakSeen)
	if e := metric(t, g, "caddy_api_key_store_errors_total"); e != errorsBefore {
		t.Errorf("a busy store counted as %v store errors", e-errorsBefore)
	}
	if busy == 0 {
		t.Errorf("the flood never filled the query slots: the test proves nothing")
	}
	// Each open connection costs Caddy a goroutine or two (more while
	// closed ones are being cleaned up on a busy machine); lookups nobody
	// waits for must not pile up on top. The peak is a figure of the
	// machine; this bound only catches a pile-up (TestAbandonedFlood… in
	// cache checks the cancellation itself, exactly).
	if limit := baseline + 5*1200; peakSeen > limit {
		t.Errorf("the gateway peaked at %v goroutines under a flood of 1,200 connections (limit %v)", peakSeen, limit)
	}
	ok, took := pollUntil(30*time.Second, 100*time.Millisecond, func() bool {
		return metric(t, g, "go_goroutines") <= baseline+50
	})
	if !ok {
		t.Errorf("goroutines stayed at %v after the flood (baseline %v)", metric(t, g, "go_goroutines"), baseline)
	}
	t.Logf("goroutines back to baseline %v after the flood", took.Round(time.Millisecond))
	g.stop()
	for _, line := range []string{"key store unavailable; answering 503"} {
		if hasLine(g.log(), line) {
			t.Errorf("a busy store was logged as unavailable (%q)", line)
		}
	}
}
