package tests

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestQuotaSharedByTwoGateways: two Caddy processes on one PostgreSQL
// database share a key's quota. Each client sends at a steady pace until
// its gateway refuses; together they get the quota through, plus at most
// what the gateways let through before they saw each other's counts:
// each gateway's pace over two sync intervals (2 s). A gateway started
// afterwards refuses the key: the quota is in the store, not in memory.
func TestQuotaSharedByTwoGateways(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, postgresStore)
	up := newUpstream(t)
	const quota, pace = 300, 100 // requests; requests per second per client
	k := sb.createKey("metered", "--quota", "300/day")
	gws := []*gateway{newGateway(t, sb), pgGateway(t, sb)}
	for _, g := range gws {
		g.start(apiKeySite(g, up, ""))
	}
	var mu sync.Mutex
	passed, refused := 0, 0
	var wg sync.WaitGroup
	for _, g := range gws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / pace)
			defer tick.Stop()
			deadline := time.Now().Add(30 * time.Second)
			streak := 0
			for streak < 20 && time.Now().Before(deadline) { // until refused 20 times in a row
				<-tick.C
				r := bearer(t, g.url+"/", k.Key)
				mu.Lock()
				switch r.status {
				case http.StatusOK:
					passed++
					streak = 0
				case http.StatusTooManyRequests:
					refused++
					streak++
				default:
					t.Errorf("status %d", r.status)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	over := passed - quota
	bound := 2 * pace * 2 // the other gateway's pace over two sync intervals, for each of the two
	t.Logf("quota %d across 2 gateways at %d/s each: %d passed (overshoot %d, bound %d), %d refused", quota, pace, passed, over, bound, refused)
	if over < 0 || over > bound {
		t.Fatalf("%d passed for a quota of %d: overshoot %d, bound %d", passed, quota, over, bound)
	}
	r := bearer(t, gws[0].url+"/", k.Key)
	wantStatus(t, "past the quota", r, http.StatusTooManyRequests)
	if p := r.problem(t); p.Code != "quota_exceeded" || r.header.Get("Retry-After") == "" {
		t.Errorf("refusal %q, Retry-After %q", p.Code, r.header.Get("Retry-After"))
	}
	for _, g := range gws {
		g.stop()
	}
	g3 := newGateway(t, sb)
	g3.start(apiKeySite(g3, up, ""))
	wantStatus(t, "past the quota, on a gateway started afterwards", bearer(t, g3.url+"/", k.Key), http.StatusTooManyRequests)
}

// pgGateway is a second gateway on sb's PostgreSQL database, with its own
// directories.
func pgGateway(t *testing.T, sb *sandbox) *gateway {
	return newGateway(t, pgSandbox(t, sb.dsn, sb.pepper))
}

// TestUsesThroughCaddy: a key with uses works that many times, then gets
// 429 uses_exhausted, also after a restart; on both stores.
func TestUsesThroughCaddy(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		k := sb.createKey("trial", "--uses", "3")
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, ""))
		for i := 0; i < 3; i++ {
			r := bearer(t, g.url+"/", k.Key)
			wantUpstream(t, "a use", r)
		}
		r := bearer(t, g.url+"/", k.Key)
		wantStatus(t, "no uses left", r, http.StatusTooManyRequests)
		if p := r.problem(t); p.Code != "uses_exhausted" {
			t.Errorf("code %q", p.Code)
		}
		if got := r.header.Values("RateLimit"); len(got) != 1 || got[0] != `"uses";r=0` {
			t.Errorf("RateLimit %q", got)
		}
		g.stop()
		g2 := newGateway(t, sb)
		g2.start(apiKeySite(g2, up, ""))
		wantStatus(t, "no uses left, after a restart", bearer(t, g2.url+"/", k.Key), http.StatusTooManyRequests)
	})
}

// TestOwnerLimitThroughCaddy: limits set on an owner with `caddy api-key
// owner` reach a running gateway that has the owner's keys cached, and
// the owner's keys spend them together.
func TestOwnerLimitThroughCaddy(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		a := sb.createKey("a", "--owner", "acme")
		b := sb.createKey("b", "--owner", "acme")
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, "cache {\n\t\t\tttl 1h\n\t\t}"))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		for _, k := range []issuedKey{a, b} {
			wantUpstream(t, "before the owner has limits", bearer(t, g.url+"/", k.Key))
		}
		sb.mustCLI("owner", "acme", "--rate", "2/h")
		// The cached keys are invalidated: within a few seconds both
		// keys share the owner's rate of 2 an hour.
		ok, _ := pollUntil(10*time.Second, 50*time.Millisecond, func() bool {
			return bearer(t, g.url+"/", a.Key).header.Get("RateLimit-Policy") != ""
		})
		if !ok {
			t.Fatal("the owner's limits did not reach the gateway")
		}
		// a spent one of the two; b gets the other, then both are refused.
		wantUpstream(t, "the owner's second request", bearer(t, g.url+"/", b.Key))
		for _, k := range []issuedKey{a, b} {
			r := bearer(t, g.url+"/", k.Key)
			wantStatus(t, "past the owner's rate", r, http.StatusTooManyRequests)
			if p := r.problem(t); p.Code != "rate_limited" {
				t.Errorf("code %q", p.Code)
			}
		}
		if res := sb.mustCLI("audit", "--owner", "acme"); !strings.Contains(res.stdout, "owner_limits") {
			t.Errorf("no owner_limits event:\n%s", res.stdout)
		}
	})
}

// TestQuotaThroughStoreOutage: while PostgreSQL is down, a gateway keeps
// enforcing a quota from the last total it knew plus its own counts, and
// writes its counts when the store is back: the store then holds exactly
// what was let through.
func TestQuotaThroughStoreOutage(t *testing.T) {
	t.Parallel()
	cluster := pgtest.StartCluster(t)
	sb := pgSandbox(t, cluster.CreateDatabase(t, "keygate"), randomPepper())
	up := newUpstream(t)
	k := sb.createKey("metered", "--quota", "10/day")
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, "cache {\n\t\t\tttl 1h\n\t\t\tmax_stale 1h\n\t\t}"))
	for i := 0; i < 4; i++ {
		wantUpstream(t, "before the outage", bearer(t, g.url+"/", k.Key))
	}
	// The gateway has written its 4 (every second) and knows the total.
	if ok, _ := pollUntil(10*time.Second, 100*time.Millisecond, func() bool { return quotaUsed(t, sb, k.ID) == 4 }); !ok {
		t.Fatalf("the store holds %d, want 4", quotaUsed(t, sb, k.ID))
	}
	cluster.Stop(t)
	for i := 0; i < 6; i++ {
		wantUpstream(t, "during the outage, within the quota", bearer(t, g.url+"/", k.Key))
	}
	r := bearer(t, g.url+"/", k.Key)
	wantStatus(t, "during the outage, past the quota", r, http.StatusTooManyRequests)
	if p := r.problem(t); p.Code != "quota_exceeded" {
		t.Errorf("code %q", p.Code)
	}
	waitForLog(t, g, "quota and uses counts not written yet", 1, 10*time.Second)
	cluster.Start(t)
	waitForLog(t, g, "quota and uses counts written again", 1, 30*time.Second)
	if n := quotaUsed(t, sb, k.ID); n != 10 {
		t.Fatalf("after the outage the store holds %d, want the 10 let through", n)
	}
}

// quotaUsed is what `caddy api-key show ID --json` says of a key's quota.
func quotaUsed(t *testing.T, sb *sandbox, id string) int64 {
	t.Helper()
	res := sb.mustCLI("show", id, "--json")
	var shown struct {
		QuotaUsed int64 `json:"quota_used"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &shown); err != nil {
		t.Fatalf("show --json: %v\n%s", err, res.stdout)
	}
	return shown.QuotaUsed
}
