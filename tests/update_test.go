package tests

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUpdateAndDeleteReachTheGateway: on both stores, a running gateway
// with the key cached for an hour sees `update` (scopes, owner) and
// `delete` within seconds, through invalidation; the key's secret stays
// the same throughout the updates.
func TestUpdateAndDeleteReachTheGateway(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		k := sb.createKey("evolving", "--owner", "acme", "--scopes", "read")
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, "scopes write\n\t\tcache {\n\t\t\tttl 1h\n\t\t}"))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		wantStatus(t, "without the scope", bearer(t, g.url+"/", k.Key), http.StatusForbidden)

		sb.mustCLI("update", k.ID, "--scopes", "read,write", "--owner", "globex")
		ok, took := pollUntil(10*time.Second, 20*time.Millisecond, func() bool {
			return bearer(t, g.url+"/", k.Key).status == http.StatusOK
		})
		if !ok {
			t.Fatal("the gateway did not see the new scopes within 10s")
		}
		t.Logf("update seen after %v", took)
		reqs := up.requests()
		if owner := reqs[len(reqs)-1].Header.Get("X-Api-Key-Owner"); owner != "globex" {
			t.Errorf("the upstream got owner %q, want the updated globex", owner)
		}

		sb.mustCLI("delete", k.ID)
		ok, took = pollUntil(10*time.Second, 20*time.Millisecond, func() bool {
			return bearer(t, g.url+"/", k.Key).status == http.StatusUnauthorized
		})
		if !ok {
			t.Fatal("the gateway still accepted the deleted key after 10s")
		}
		t.Logf("delete seen after %v", took)
		if res := sb.mustCLI("audit", "--key", k.ID); !containsAll(res.stdout, "create", "update", "delete") {
			t.Errorf("audit of the key:\n%s", res.stdout)
		}
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
