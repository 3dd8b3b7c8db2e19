package tests

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestRateLimitThroughCaddy: a route's rate_limit through a real Caddy:
// the burst passes with RateLimit headers, the next request gets 429
// rate_limited with Retry-After and the headers, another key is not
// affected, the state survives `caddy reload`, and the refusals are in
// the key's usage as 4xx.
func TestRateLimitThroughCaddy(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		k := sb.createKey("limited")
		other := sb.createKey("other")
		g := newGateway(t, sb)
		g.globals = "\tkeygate {\n\t\tusage {\n\t\t\tflush_interval 200ms\n\t\t}\n\t}\n"
		site := func(extra string) string { return apiKeySite(g, up, "rate_limit 5/m\n"+extra) }
		g.start(site(""))

		for i := 0; i < 5; i++ {
			r := bearer(t, g.url+"/", k.Key)
			wantUpstream(t, "a request within the burst", r)
			if got, want := r.header.Get("RateLimit"), `"key";r=`+strconv.Itoa(4-i)+";t="; len(got) < len(want) || got[:len(want)] != want {
				t.Errorf("request %d: RateLimit %q, want %s…", i+1, got, want)
			}
			if got := r.header.Get("RateLimit-Policy"); got != `"key";q=5;w=60` {
				t.Errorf("RateLimit-Policy %q", got)
			}
		}
		r := bearer(t, g.url+"/", k.Key)
		wantStatus(t, "past the burst", r, http.StatusTooManyRequests)
		if p := r.problem(t); p.Code != "rate_limited" {
			t.Errorf("code %q, want rate_limited", p.Code)
		}
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 12 {
			t.Errorf("Retry-After %q, want 1 to 12 seconds", r.header.Get("Retry-After"))
		}
		if r.header.Get("RateLimit") == "" {
			t.Error("no RateLimit header on the refusal")
		}
		wantUpstream(t, "another key", bearer(t, g.url+"/", other.Key))

		// A reload (here with a change elsewhere in the route) keeps the
		// key's state: still refused.
		if res := g.reload(site("realm reloaded")); res.code != 0 {
			t.Fatalf("reload: %s", res)
		}
		wantStatus(t, "past the burst, after a reload", bearer(t, g.url+"/", k.Key), http.StatusTooManyRequests)

		// 5 passed, 2 refused: the usage shows both.
		pollUntil(10*time.Second, 100*time.Millisecond, func() bool {
			_, n, _, _ := storedUsage(t, sb, k.ID)
			return n == 7
		})
		classes, n, _, _ := storedUsage(t, sb, k.ID)
		if n != 7 || classes[1] != 5 || classes[3] != 2 {
			t.Errorf("usage: %d requests, classes %v; want 5 2xx and 2 4xx", n, classes)
		}
	})
}
