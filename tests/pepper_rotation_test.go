package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPepperRotationUnderTraffic rotates the pepper of two gateways on one
// PostgreSQL store while clients keep using their keys through both, in
// the documented order (docs/operations.md): every gateway learns the new
// pepper as next, then one gateway at a time makes it current with the
// old one previous, keys are re-hashed as they are used until
// `pepper-status --check` reports none left on the old pepper, and the old
// pepper is dropped. Not one request may fail on the way. A connection
// that a reloading Caddy closes before answering (EOF, whatever the
// pepper) is retried once, as clients retry it; any answer but 200, or a
// second transport error, is a failure.
func TestPepperRotationUnderTraffic(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, postgresStore)
	newPepper := randomPepper()
	up := newUpstream(t)
	var gws []*gateway
	for i := range 2 {
		s := sb
		if i > 0 {
			s = pgSandbox(t, sb.dsn, sb.pepper)
		}
		s.setenv("KEYGATE_NEW_PEPPER", newPepper)
		gws = append(gws, newGateway(t, s))
	}
	oldFile, newFile := filepath.Join(sb.dir, "old.pepper"), filepath.Join(sb.dir, "new.pepper")
	writeFile(t, oldFile, sb.pepper)
	writeFile(t, newFile, newPepper)
	site := func(g *gateway, peppers string) string {
		return g.site(fmt.Sprintf("\tapi_key {\n\t\tdatabase %s\n\t\t%s\n\t}\n\treverse_proxy %s", sb.dsn, peppers, up.hostPort()))
	}
	const (
		before  = "pepper {env.KEYGATE_PEPPER}"
		learn   = "pepper {env.KEYGATE_PEPPER}\n\t\tnext_pepper {env.KEYGATE_NEW_PEPPER}"
		switch_ = "pepper {env.KEYGATE_NEW_PEPPER}\n\t\tprevious_peppers {env.KEYGATE_PEPPER}"
		after   = "pepper {env.KEYGATE_NEW_PEPPER}"
	)
	var keys []string
	for i := range 12 {
		keys = append(keys, sb.createKey(fmt.Sprintf("customer-%d", i)).Key)
	}
	for _, g := range gws {
		g.start(site(g, before))
		waitForLog(t, g, watchingLog, 1, startTimeout)
	}

	// Steady traffic: four clients, each key through both gateways, a new
	// connection per request so that reloads cannot reset a reused one.
	var sent, failed, retried atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(3 * time.Minute)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(deadline) && sent.Load() < 100_000; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				g, k := gws[i%len(gws)], keys[(i/len(gws))%len(keys)]
				do := func() (*http.Response, error) {
					req, _ := http.NewRequest("GET", g.url+"/", nil)
					req.Header.Set("Authorization", "Bearer "+k)
					return client.Do(req)
				}
				resp, err := do()
				if err != nil {
					retried.Add(1)
					time.Sleep(10 * time.Millisecond)
					resp, err = do()
				}
				sent.Add(1)
				if err == nil {
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					mu.Lock()
					if len(failures) < 10 {
						failures = append(failures, fmt.Sprintf("%s key %d: %v %v", g.url, (i/len(gws))%len(keys), err, statusOf(resp)))
					}
					mu.Unlock()
				}
				time.Sleep(3 * time.Millisecond)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	waitSent := func(what string, n int64) {
		t.Helper()
		target := sent.Load() + n
		if ok, _ := pollUntil(time.Minute, 10*time.Millisecond, func() bool { return sent.Load() >= target }); !ok {
			t.Fatalf("%s: the clients did not send %d requests within a minute", what, n)
		}
	}
	reload := func(g *gateway, peppers string) {
		t.Helper()
		if res := g.reload(site(g, peppers)); res.code != 0 {
			t.Fatalf("reload: %s", res)
		}
	}
	waitSent("before the rotation", 100)

	// 1. Every gateway learns the new pepper, as next.
	for _, g := range gws {
		reload(g, learn)
		waitSent("with the next pepper", 100)
	}
	// 2. One gateway at a time makes it current; the other still has
	// it as next meanwhile, and accepts keys already re-hashed.
	reload(gws[0], switch_)
	waitSent("with one gateway switched", 300)
	made := sb.createKey("made-with-the-new-pepper", "--pepper-file", newFile, "--previous-pepper-file", oldFile)
	for _, g := range gws {
		wantUpstream(t, "a key made with the new pepper at "+g.url, bearer(t, g.url+"/", made.Key))
	}
	reload(gws[1], switch_)
	status := func() cliResult {
		return sb.cli("pepper-status", "--check", "--pepper-file", newFile, "--previous-pepper-file", oldFile)
	}
	t.Logf("pepper-status while switching:\n%s", status().stdout)
	ok, took := pollUntil(time.Minute, 200*time.Millisecond, func() bool { return status().code == 0 })
	if !ok {
		t.Fatalf("pepper-status --check still reports keys on the old pepper after a minute of traffic:\n%s", status())
	}
	res := status()
	t.Logf("pepper-status reached zero %v after the second gateway switched:\n%s", took, res.stdout)
	var uses []struct {
		ID      string `json:"id"`
		Here    string `json:"here"`
		Keys    int    `json:"keys"`
		Working int    `json:"working"`
		Newest  bool   `json:"newest"`
	}
	js := sb.mustCLI("pepper-status", "--json", "--pepper-file", newFile, "--previous-pepper-file", oldFile)
	if err := json.Unmarshal([]byte(js.stdout), &uses); err != nil || len(uses) != 2 {
		t.Fatalf("pepper-status --json: %v\n%s", err, js)
	}
	if uses[0].Here != "previous" || uses[0].Keys != 0 || uses[1].Here != "current" || !uses[1].Newest || uses[1].Keys != len(keys)+1 {
		t.Fatalf("pepper-status --json after the rotation: %+v", uses)
	}
	if !strings.Contains(gws[0].log(), "re-hashing keys made with a previous pepper") {
		t.Errorf("the first gateway to switch did not log that it re-hashes keys")
	}
	// 3. The old pepper is dropped.
	for _, g := range gws {
		reload(g, after)
		waitSent("after the rotation", 100)
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during the rotation; first ones:\n%s", n, sent.Load(), strings.Join(failures, "\n"))
	}
	t.Logf("%d requests through two gateways during the rotation, none failed (%d connections closed by a reload, retried)", sent.Load(), retried.Load())
	// The CLI with the old pepper alone still opens the store (it is
	// registered), but the keys are no longer found with it.
	for _, k := range keys[:1] {
		wantUpstream(t, "a re-hashed key after the old pepper was dropped", bearer(t, gws[0].url+"/", k))
	}
}

// statusOf is a response's status for a failure report, "" without one.
func statusOf(r *http.Response) string {
	if r == nil {
		return ""
	}
	return r.Status
}
