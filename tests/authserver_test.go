package tests

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAuthServerBehindForwardAuth: Keygate as the auth service of Caddy's
// forward_auth, with the configuration docs/auth-server.md shows (its
// first Caddyfile, on the test's ports). One Caddy runs the auth
// site (api_key with auth_server, on a port of its own) and the front
// site that asks it before proxying. The upstream gets the identity the
// auth site answered and, with request_header -Authorization after
// forward_auth, never the key; the refusals reach the client unchanged;
// the rate limit and usage count each request once.
func TestAuthServerBehindForwardAuth(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		k := sb.createKey("front", "--owner", "acme", "--scopes", "read,write")
		revoked := sb.createKey("gone", "--owner", "acme")
		sb.revoke(revoked.ID)
		g := newGateway(t, sb)
		g.globals = "\tkeygate {\n\t\tusage {\n\t\t\tflush_interval 200ms\n\t\t}\n\t}\n"
		authPort, keepPort := freePort(t), freePort(t)
		// The documented configuration, on the test's ports and store,
		// with a rate limit the test can reach.
		doc := fencedBlocks(t, "../docs/auth-server.md", "caddyfile")[0]
		sites := strings.NewReplacer(
			"127.0.0.1:9000", fmt.Sprintf("127.0.0.1:%d", authPort),
			"api.example.com {", fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1", g.port),
			"127.0.0.1:8081", up.hostPort(),
			"\t\tauth_server\n", "\t\t"+sb.storeOptions()+"\n\t\tauth_server\n",
			"rate_limit 100/m", "rate_limit 2/m",
		).Replace(doc)
		if strings.Count(sites, up.hostPort()) != 1 || !strings.Contains(sites, "rate_limit 2/m") || !strings.Contains(sites, "request_header -Authorization") {
			t.Fatalf("docs/auth-server.md's first Caddyfile is not the one this test expects:\n%s", doc)
		}
		// The same front without request_header, to show what
		// forward_auth alone passes on.
		keep := siteBlock(keepPort, fmt.Sprintf("\tforward_auth 127.0.0.1:%d {\n\t\turi /verify\n\t\tcopy_headers X-Api-Key-Id X-Api-Key-Owner\n\t}\n\treverse_proxy %s",
			authPort, up.hostPort()))
		g.start(sites+"\n"+keep, authPort, keepPort)
		keepURL := fmt.Sprintf("http://127.0.0.1:%d", keepPort)

		// Admitted: the identity comes from the auth site, whatever the
		// client sent in its place.
		r := get(t, g.url+"/v1/orders", "Authorization", "Bearer "+k.Key, "X-Api-Key-Id", "forged", "X-Api-Key-Owner", "forged")
		wantUpstream(t, "a valid key", r)
		reqs := up.requests()
		got := reqs[len(reqs)-1]
		if got.Header.Get("X-Api-Key-Id") != k.ID || got.Header.Get("X-Api-Key-Owner") != "acme" {
			t.Errorf("the upstream got id %q owner %q, want %s acme", got.Header.Get("X-Api-Key-Id"), got.Header.Get("X-Api-Key-Owner"), k.ID)
		}
		if s := got.String(); strings.Contains(s, secretOf(k.Key)) || strings.Contains(s, "forged") {
			t.Errorf("the upstream got the key or a forged identity:\n%s", s)
		}
		if got.URL != "/v1/orders" || got.Method != http.MethodGet {
			t.Errorf("the upstream got %s %s, want the client's GET /v1/orders", got.Method, got.URL)
		}

		// forward_auth itself leaves Authorization in the request it
		// proxies: without request_header -Authorization, the upstream
		// gets the key.
		wantUpstream(t, "a valid key, front without request_header", bearer(t, keepURL+"/", k.Key))
		reqs = up.requests()
		if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != "Bearer "+k.Key {
			t.Errorf("without request_header -Authorization the upstream got Authorization %q; docs/auth-server.md says it gets the key", got)
		}

		// Refusals: status, problem body and challenge reach the client.
		n := len(up.requests())
		r = get(t, g.url+"/")
		wantStatus(t, "no key", r, http.StatusUnauthorized)
		if p := r.problem(t); p.Code != "missing_key" {
			t.Errorf("no key: code %q", p.Code)
		}
		if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="api"` {
			t.Errorf("no key: WWW-Authenticate %q", got)
		}
		r = bearer(t, g.url+"/", revoked.Key)
		wantStatus(t, "a revoked key", r, http.StatusUnauthorized)
		if p := r.problem(t); p.Code != "invalid_key" {
			t.Errorf("revoked key: code %q", p.Code)
		}
		if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
			t.Errorf("revoked key: WWW-Authenticate %q", got)
		}

		// Two requests so far with k: the third is over 2/m.
		r = bearer(t, g.url+"/", k.Key)
		wantStatus(t, "past the rate limit", r, http.StatusTooManyRequests)
		if p := r.problem(t); p.Code != "rate_limited" {
			t.Errorf("rate limited: code %q", p.Code)
		}
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
			t.Errorf("rate limited: Retry-After %q, want 1 to 60 seconds", r.header.Get("Retry-After"))
		}
		if got := r.header.Get("RateLimit"); !strings.HasPrefix(got, `"key";r=0;`) {
			t.Errorf("rate limited: RateLimit %q", got)
		}
		if len(up.requests()) != n {
			t.Error("a refused request reached the upstream")
		}

		// Usage: the two 200s the auth site answered and its 429.
		pollUntil(10*time.Second, 100*time.Millisecond, func() bool {
			_, n, _, _ := storedUsage(t, sb, k.ID)
			return n >= 3
		})
		classes, requests, _, _ := storedUsage(t, sb, k.ID)
		if requests != 3 || classes != [5]int64{0, 2, 0, 1, 0} {
			t.Errorf("usage: %d requests by class %v, want 3: 2 2xx and 1 4xx", requests, classes)
		}
	})
}
