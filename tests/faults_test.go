package tests

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
)

// Load generation: bounded in every direction. Each worker stops at the
// first of: the load being finished, its time cap, its request cap.
const (
	loadPause       = 5 * time.Millisecond // between two requests of a worker
	loadMaxRequests = 20000                // per worker
)

// loadKey is a key a worker sends, with a name for messages.
type loadKey struct{ name, key string }

// faultOptions turn off the budget of failed key checks: the fault tests
// send invalid keys from the same client as valid ones, to check the
// answers each gets while the store fails, not the budget (see
// TestFloodCannotStarveRealKeys).
const faultOptions = "failed_auth_limit off\n\t\t"

func keyOf(k issuedKey) loadKey { return loadKey{name: k.Name, key: k.Key} }

// loadSpec is one worker: it sends its keys in turn, each for turn
// before moving to the next (and wrapping around).
type loadSpec struct {
	class string // what kind of keys, for the assertions
	keys  []loadKey
	turn  time.Duration // 0: the next key on every request
}

// sample is one request of a load.
type sample struct {
	class, name string
	status      int    // 0: no answer
	err         string // when status is 0
	retryAfter  string
	sent, done  time.Time
}

// load is a set of workers sending requests to a gateway.
type load struct {
	stopCh chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	client *http.Client

	mu      sync.Mutex
	samples []sample
}

// startLoad starts one worker per spec against url; each stops after
// limit at the latest.
func startLoad(url string, limit time.Duration, specs ...loadSpec) *load {
	l := &load{
		stopCh: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	begin := time.Now()
	deadline := begin.Add(limit)
	for _, spec := range specs {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := range loadMaxRequests {
				select {
				case <-l.stopCh:
					return
				default:
				}
				if time.Now().After(deadline) {
					return
				}
				n := i
				if spec.turn > 0 {
					n = int(time.Since(begin) / spec.turn)
				}
				k := spec.keys[n%len(spec.keys)]
				l.record(l.send(url, spec.class, k))
				time.Sleep(loadPause)
			}
		}()
	}
	return l
}

func (l *load) send(url, class string, k loadKey) sample {
	s := sample{class: class, name: k.name, sent: time.Now()}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		s.err = err.Error()
		return s
	}
	req.Header.Set("Authorization", "Bearer "+k.key)
	res, err := l.client.Do(req)
	if err != nil {
		s.err, s.done = err.Error(), time.Now()
		return s
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	s.status, s.retryAfter, s.done = res.StatusCode, res.Header.Get("Retry-After"), time.Now()
	return s
}

func (l *load) record(s sample) {
	l.mu.Lock()
	l.samples = append(l.samples, s)
	l.mu.Unlock()
}

// snapshot returns the samples so far.
func (l *load) snapshot() []sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sample(nil), l.samples...)
}

// finish stops the workers, waits for them and returns every sample.
func (l *load) finish() []sample {
	l.once.Do(func() { close(l.stopCh) })
	l.wg.Wait()
	l.client.CloseIdleConnections()
	return l.snapshot()
}

// firstOK returns, for each named key, when its first request sent at or
// after since was accepted.
func firstOK(samples []sample, since time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, s := range samples {
		if s.status == http.StatusOK && !s.sent.Before(since) {
			if t, ok := out[s.name]; !ok || s.done.Before(t) {
				out[s.name] = s.done
			}
		}
	}
	return out
}

// tally counts statuses by class, and by class and key name.
type tally map[string]map[int]int

func (t tally) add(k string, status int) {
	if t[k] == nil {
		t[k] = map[int]int{}
	}
	t[k][status]++
}

func (t tally) String() string {
	var lines []string
	for k, m := range t {
		var parts []string
		for st, n := range m {
			parts = append(parts, fmt.Sprintf("%d×%d", n, st))
		}
		sort.Strings(parts)
		lines = append(lines, k+": "+strings.Join(parts, " "))
	}
	sort.Strings(lines)
	return strings.Join(lines, "; ")
}

func tallyOf(samples []sample) (byClass, byKey tally) {
	byClass, byKey = tally{}, tally{}
	for _, s := range samples {
		byClass.add(s.class, s.status)
		byKey.add(s.class+"/"+s.name, s.status)
	}
	return byClass, byKey
}

// badSamples reports up to 10 samples for which ok is false, and how many
// there were.
func badSamples(t testing.TB, what string, samples []sample, ok func(sample) bool) int {
	t.Helper()
	n := 0
	for _, s := range samples {
		if ok(s) {
			continue
		}
		if n < 10 {
			t.Errorf("%s: %s key %q at %s: status %d %s (Retry-After %q)", what, s.class, s.name,
				s.sent.Format("15:04:05.000"), s.status, s.err, s.retryAfter)
		}
		n++
	}
	if n > 10 {
		t.Errorf("%s: %d more such answers", what, n-10)
	}
	return n
}

// issueKeys creates keys in the sandbox's PostgreSQL store from this
// process, as the CLI does but without a process per key (which a
// race-enabled build makes slow).
func issueKeys(t testing.TB, sb *sandbox, names ...string) []loadKey {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := keystore.NewHasher([]byte(sb.pepper))
	if err != nil {
		t.Fatal(err)
	}
	f, err := keystore.NewFormat("")
	if err != nil {
		t.Fatal(err)
	}
	s, err := keystore.Open(ctx, sb.dsn, keystore.Options{PepperCheck: h.PepperCheck()})
	if err != nil {
		t.Fatalf("opening the key store: %v", err)
	}
	defer s.Close()
	var out []loadKey
	for _, name := range names {
		key, _, err := testkeys.Issue(ctx, s, f, h, keystore.NewKeyParams{Name: name})
		if err != nil {
			t.Fatalf("issuing key %s: %v", name, err)
		}
		out = append(out, loadKey{name: name, key: key})
	}
	return out
}

// unavailableWithRetry is a 503 with the default Retry-After.
func unavailableWithRetry(s sample) bool {
	return s.status == http.StatusServiceUnavailable && s.retryAfter == "5"
}

func TestPostgresStoppedMidLoad(t *testing.T) {
	t.Parallel()
	c := pgtest.StartCluster(t)
	sb := pgSandbox(t, c.CreateDatabase(t, "keygate"), randomPepper())
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, faultOptions+"cache {\n\t\t\tttl 2s\n\t\t\tmax_stale 5m\n\t\t}\n\t\tstore_timeout 500ms"))
	waitForLog(t, g, watchingLog, 1, startTimeout)

	var cached, uncached []loadSpec
	for i := 1; i <= 3; i++ {
		k := sb.createKey(fmt.Sprintf("K%d", i))
		ensureCached(t, g, k.Name, k.Key)
		cached = append(cached, loadSpec{class: "cached", keys: []loadKey{keyOf(k)}})
	}
	for i := 1; i <= 5; i++ {
		k := sb.createKey(fmt.Sprintf("U%d", i))
		uncached = append(uncached, loadSpec{class: "uncached", keys: []loadKey{keyOf(k)}})
	}
	staleBefore := metric(t, g, staleMetric)

	const limit = 40 * time.Second // hard cap of every worker
	cachedLoad := startLoad(g.url+"/", limit, cached...)
	defer cachedLoad.finish()
	time.Sleep(300 * time.Millisecond) // load on a healthy store first
	c.Stop(t)
	stopped := time.Now()
	// The uncached keys are first sent while the store is down.
	uncachedLoad := startLoad(g.url+"/", limit, uncached...)
	defer uncachedLoad.finish()
	time.Sleep(5*time.Second - time.Since(stopped))
	c.Start(t)
	started := time.Now()
	t.Logf("PostgreSQL was down for %v", started.Sub(stopped).Round(time.Millisecond))

	// No reload: every uncached key must be accepted again on its own.
	const recoveryBound = 15 * time.Second
	var recovered map[string]time.Time
	pollUntil(recoveryBound, 20*time.Millisecond, func() bool {
		recovered = firstOK(uncachedLoad.snapshot(), started)
		return len(recovered) == len(uncached)
	})
	// A little load after recovery: every key answered once more.
	recoveredAt := time.Now()
	pollUntil(5*time.Second, 20*time.Millisecond, func() bool { return len(firstOK(uncachedLoad.snapshot(), recoveredAt)) == len(uncached) })
	cachedSamples, uncachedSamples := cachedLoad.finish(), uncachedLoad.finish()
	byClass, byKey := tallyOf(append(append([]sample(nil), cachedSamples...), uncachedSamples...))
	t.Logf("answers: %s", byClass)
	t.Logf("answers by key: %s", byKey)

	badSamples(t, "cached key not served", cachedSamples, func(s sample) bool { return s.status == http.StatusOK })
	badSamples(t, "uncached key neither served nor 503 with Retry-After", uncachedSamples, func(s sample) bool {
		return s.status == http.StatusOK || unavailableWithRetry(s)
	})
	outage := 0
	for _, s := range uncachedSamples {
		if s.status == http.StatusServiceUnavailable && s.done.Before(started) {
			outage++
		}
	}
	if outage == 0 {
		t.Errorf("no uncached key got 503 while PostgreSQL was down: the outage was not exercised")
	}
	if stale := metric(t, g, staleMetric); stale <= staleBefore {
		t.Errorf("%s stayed at %v: cached keys were never served stale during the outage", staleMetric, stale)
	}
	var last time.Duration
	for _, spec := range uncached {
		at, ok := recovered[spec.keys[0].name]
		if !ok {
			t.Errorf("uncached key %s not accepted within %v after PostgreSQL came back", spec.keys[0].name, recoveryBound)
			continue
		}
		last = max(last, at.Sub(started))
	}
	t.Logf("every uncached key accepted %v after PostgreSQL was started again", last.Round(time.Millisecond))

	fresh := sb.createKey("created after the restart")
	wantUpstream(t, "key created after the restart", bearer(t, g.url+"/", fresh.Key))
}

func TestSlowStoreAnswers503InTime(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, postgresStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, faultOptions+longCache+"\n\t\tstore_timeout 300ms"))
	cachedKey := sb.createKey("cached")
	uncachedKey := sb.createKey("uncached")
	ensureCached(t, g, cachedKey.Name, cachedKey.Key)

	// A transaction holding the table's strongest lock: every read of a
	// key waits for it.
	db := connectDB(t, sb.dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "LOCK TABLE keygate_keys IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	const deadline = 3 * time.Second // store_timeout 300ms and a generous margin
	for i := range 3 {
		wantUpstream(t, fmt.Sprintf("cached key while the table is locked (%d)", i), bearer(t, g.url+"/", cachedKey.Key))
		start := time.Now()
		r := bearer(t, g.url+"/", uncachedKey.Key)
		took := time.Since(start)
		wantStatus(t, fmt.Sprintf("uncached key while the table is locked (%d)", i), r, http.StatusServiceUnavailable)
		if got := r.header.Get("Retry-After"); got != "5" {
			t.Errorf("uncached key while locked (%d): Retry-After %q, want the default 5", i, got)
		}
		if p := r.problem(t); p.Code != "store_unavailable" {
			t.Errorf("uncached key while locked (%d): code %q, want store_unavailable", i, p.Code)
		}
		if took > deadline {
			t.Errorf("uncached key while locked (%d): 503 after %v, want within %v (store_timeout 300ms)", i, took, deadline)
		}
		t.Logf("uncached key while the table is locked (%d): 503 after %v", i, took.Round(time.Millisecond))
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var last response
	ok, took := pollUntil(5*time.Second, 20*time.Millisecond, func() bool {
		last = bearer(t, g.url+"/", uncachedKey.Key)
		return last.status == http.StatusOK
	})
	if !ok {
		t.Fatalf("uncached key after the lock was released: status %d after %v; body %s", last.status, took, last.body)
	}
	wantUpstream(t, "uncached key after the lock was released", last)
	t.Logf("uncached key accepted %v after the lock was released", took.Round(time.Millisecond))
}

func TestTerminatedConnectionsUnderLoad(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, postgresStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, faultOptions))
	waitForLog(t, g, watchingLog, 1, startTimeout)
	db := connectDB(t, sb.dsn)

	var cached []loadKey
	for i := 1; i <= 3; i++ {
		k := sb.createKey(fmt.Sprintf("K%d", i))
		ensureCached(t, g, k.Name, k.Key)
		cached = append(cached, keyOf(k))
	}
	// Uncached keys come into use one after another during the run, so
	// that the store is asked about new keys all along.
	const uncachedWorkers, uncachedPerWorker = 3, 6
	uncached := make([][]loadKey, uncachedWorkers)
	for w := range uncachedWorkers {
		var names []string
		for i := range uncachedPerWorker {
			names = append(names, fmt.Sprintf("U%d.%d", w, i))
		}
		uncached[w] = issueKeys(t, sb, names...)
	}
	revoked := sb.createKey("revoked")
	ensureCached(t, g, revoked.Name, revoked.Key)
	sb.revoke(revoked.ID)
	wantStatus(t, "revoked key before the run", bearer(t, g.url+"/", revoked.Key), http.StatusUnauthorized)
	unknown := loadKey{name: "unknown", key: unknownKey(t)}
	purgesBefore := metric(t, g, purgesMetric)

	const run = 5 * time.Second
	specs := []loadSpec{
		{class: "invalid", keys: []loadKey{unknown}},
		{class: "invalid", keys: []loadKey{keyOf(revoked)}},
	}
	for _, k := range cached {
		specs = append(specs, loadSpec{class: "cached", keys: []loadKey{k}})
	}
	for w := range uncachedWorkers {
		// Each key is new to the cache when its turn comes.
		specs = append(specs, loadSpec{class: "uncached", keys: uncached[w], turn: run / uncachedPerWorker})
	}
	l := startLoad(g.url+"/", run+5*time.Second, specs...)
	defer l.finish()

	// Terminate every gateway session, pool and listener alike, every
	// 200ms while the load runs.
	var terminated, rounds int
	for end := time.Now().Add(run); time.Now().Before(end) && rounds < 50; rounds++ {
		terminated += terminate(t, db, gatewaySessions)
		time.Sleep(200 * time.Millisecond)
	}
	samples := l.finish()
	byClass, byKey := tallyOf(samples)
	t.Logf("%d sessions terminated in %d rounds; answers: %s", terminated, rounds, byClass)
	t.Logf("answers by key: %s", byKey)
	if terminated < rounds {
		t.Errorf("only %d sessions terminated in %d rounds: the fault was not exercised", terminated, rounds)
	}

	var valid, cachedSamples []sample
	unavailable := 0
	for _, s := range samples {
		switch s.class {
		case "cached":
			cachedSamples = append(cachedSamples, s)
		case "uncached":
			valid = append(valid, s)
			if s.status == http.StatusServiceUnavailable {
				unavailable++
			}
		}
	}
	badSamples(t, "cached key not served", cachedSamples, func(s sample) bool { return s.status == http.StatusOK })
	badSamples(t, "uncached valid key neither served nor 503 with Retry-After", valid, func(s sample) bool {
		return s.status == http.StatusOK || unavailableWithRetry(s)
	})
	badSamples(t, "invalid key neither refused nor 503 with Retry-After", samples, func(s sample) bool {
		return s.class != "invalid" || s.status == http.StatusUnauthorized || unavailableWithRetry(s)
	})
	// The share of 503s is a figure of the machine (how long a lookup
	// waits behind the terminations); the code's part is that failed
	// lookups are retried on fresh connections, so most succeed.
	t.Logf("uncached valid keys: %d of %d requests answered 503 (%.1f%%)", unavailable, len(valid), 100*float64(unavailable)/float64(max(1, len(valid))))
	if len(valid) == 0 || unavailable*2 >= len(valid) {
		t.Errorf("uncached valid keys: %d of %d requests answered 503, want fewer than half", unavailable, len(valid))
	}

	// Terminations over: every key gets its right answer again within 5s.
	fresh := keyOf(sb.createKey("created after the terminations"))
	all := append([]loadKey{fresh}, cached...)
	for _, keys := range uncached {
		all = append(all, keys...)
	}
	var wrong string
	ok, took := pollUntil(5*time.Second, 50*time.Millisecond, func() bool {
		wrong = ""
		for _, k := range all {
			if r := bearer(t, g.url+"/", k.key); r.status != http.StatusOK {
				wrong = fmt.Sprintf("%s: %d", k.name, r.status)
				return false
			}
		}
		for _, k := range []loadKey{unknown, keyOf(revoked)} {
			if r := bearer(t, g.url+"/", k.key); r.status != http.StatusUnauthorized {
				wrong = fmt.Sprintf("%s: %d", k.name, r.status)
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("not every key answered right %v after the terminations stopped (%s)", took, wrong)
	}
	t.Logf("every key answered right %v after the terminations stopped", took.Round(time.Millisecond))

	// The listener is back (its backoff may have grown to 5s), has purged
	// the cache, and delivers revocations again.
	if ok, _ := pollUntil(15*time.Second, 20*time.Millisecond, func() bool { return listenerUp(g) }); !ok {
		t.Fatalf("the key change listener did not come back within 15s; log:\n%s", g.log())
	}
	if purges := metric(t, g, purgesMetric); purges <= purgesBefore {
		t.Errorf("%s stayed at %v after the listener reconnected", purgesMetric, purges)
	}
	target := sb.createKey("revoked after the terminations")
	ensureCached(t, g, target.Name, target.Key)
	sb.revoke(target.ID)
	res, ok := timeRefusal(t, []*gateway{g}, target.Name, target.Key, time.Now(), revocationLimit)
	if !ok {
		t.Fatalf("key revoked after the terminations not refused after %v; %s", res.took, res)
	}
	t.Logf("revocation after the terminations refused after %v, %s", res.took.Round(time.Millisecond), targetNote(res.took))
}
