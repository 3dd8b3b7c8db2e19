package tests

import (
	"encoding/json"
	"fmt"
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

// TestScopeWildcardsThroughCaddy: a key scope "orders:*" covers every
// scope under "orders:", "*" covers all; a key without the route's scope
// gets 403 insufficient_scope with the RFC 6750 challenge naming it.
func TestScopeWildcardsThroughCaddy(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		wild := sb.createKey("wild", "--scopes", "orders:*")
		all := sb.createKey("all", "--scopes", "*")
		narrow := sb.createKey("narrow", "--scopes", "orders:read")
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, "scopes orders:refunds:write"))
		wantUpstream(t, "orders:*", bearer(t, g.url+"/", wild.Key))
		wantUpstream(t, "*", bearer(t, g.url+"/", all.Key))
		r := bearer(t, g.url+"/", narrow.Key)
		wantStatus(t, "orders:read only", r, http.StatusForbidden)
		if p := r.problem(t); p.Code != "insufficient_scope" {
			t.Errorf("code %q", p.Code)
		}
		if got, want := r.header.Get("WWW-Authenticate"), `error="insufficient_scope", scope="orders:refunds:write"`; !strings.Contains(got, want) {
			t.Errorf("WWW-Authenticate %q, want it to hold %s", got, want)
		}
		if res := sb.cli("create", "--name", "bad", "--scopes", "orders:*:read"); res.code == 0 || !strings.Contains(res.stderr, "whole last segment") {
			t.Errorf("a * inside a scope: %s", res)
		}
	})
}

// TestNotBeforeThroughCaddy: a key made to start in a few seconds is
// refused with not_yet_valid_key until then and accepted after; update
// moves its start later and back to now, seen by the running gateway.
func TestNotBeforeThroughCaddy(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		k := sb.createKey("later", "--not-before", "3s")
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, ""))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		r := bearer(t, g.url+"/", k.Key)
		if r.status == http.StatusUnauthorized {
			if p := r.problem(t); p.Code != "not_yet_valid_key" {
				t.Errorf("code %q", p.Code)
			}
		} else if r.status != http.StatusOK { // a slow machine may already be past the start
			t.Fatalf("status %d", r.status)
		}
		if ok, _ := pollUntil(10*time.Second, 50*time.Millisecond, func() bool { return bearer(t, g.url+"/", k.Key).status == http.StatusOK }); !ok {
			t.Fatal("the key did not start working after its not-before")
		}
		sb.mustCLI("update", k.ID, "--not-before", "1h")
		if ok, _ := pollUntil(10*time.Second, 20*time.Millisecond, func() bool { return bearer(t, g.url+"/", k.Key).status == http.StatusUnauthorized }); !ok {
			t.Fatal("a later not-before did not reach the gateway")
		}
		sb.mustCLI("update", k.ID, "--not-before", "now")
		if ok, _ := pollUntil(10*time.Second, 20*time.Millisecond, func() bool { return bearer(t, g.url+"/", k.Key).status == http.StatusOK }); !ok {
			t.Fatal("--not-before now did not reach the gateway")
		}
	})
}

// TestRotationThroughCaddy: `rotate --grace 2s` on both stores: both keys
// work during the grace, the old one is refused after it, show displays
// both links, and the audit trail has the rotation.
func TestRotationThroughCaddy(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		old := sb.createKey("rotating", "--owner", "acme", "--scopes", "read")
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, "scopes read\n\t\tcache {\n\t\t\tttl 1h\n\t\t}"))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		wantUpstream(t, "before the rotation", bearer(t, g.url+"/", old.Key))

		res := sb.mustCLI("rotate", old.ID, "--grace", "2s", "--json")
		var rotated struct {
			ID       string `json:"id"`
			Key      string `json:"key"`
			Replaces string `json:"replaces"`
			Owner    string `json:"owner"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &rotated); err != nil || rotated.Replaces != old.ID || rotated.Owner != "acme" || rotated.Key == "" {
			t.Fatalf("rotate --json: %v\n%s", err, res.stdout)
		}
		wantUpstream(t, "the new key", bearer(t, g.url+"/", rotated.Key))
		start := time.Now()
		if r := bearer(t, g.url+"/", old.Key); r.status != http.StatusOK && time.Since(start) < time.Second {
			t.Fatalf("the old key during its grace: %d", r.status)
		}
		ok, took := pollUntil(15*time.Second, 50*time.Millisecond, func() bool {
			return bearer(t, g.url+"/", old.Key).status == http.StatusUnauthorized
		})
		if !ok {
			t.Fatal("the old key still works 15s after a 2s grace")
		}
		t.Logf("the old key refused %v after the rotation", took.Round(time.Millisecond))
		wantUpstream(t, "the new key after the grace", bearer(t, g.url+"/", rotated.Key))
		if out := sb.mustCLI("show", old.ID).stdout; !strings.Contains(out, "Replaced by:") || !strings.Contains(out, rotated.ID) {
			t.Errorf("show of the old key:\n%s", out)
		}
		if out := sb.mustCLI("show", rotated.ID).stdout; !strings.Contains(out, "Replaces:") || !strings.Contains(out, old.ID) {
			t.Errorf("show of the new key:\n%s", out)
		}
		if out := sb.mustCLI("audit", "--owner", "acme").stdout; !strings.Contains(out, "rotate") {
			t.Errorf("no rotate event:\n%s", out)
		}
	})
}

// TestAllowlistThroughCaddy: a key with an allowlist works only from its
// networks, by Caddy's client IP: behind a trusted proxy the client's
// X-Forwarded-For address counts, from anyone else X-Forwarded-For is
// ignored, so a spoofed one gets nothing. An update of the list reaches
// a running gateway.
func TestAllowlistThroughCaddy(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		k := sb.createKey("office", "--allow-cidr", "203.0.113.0/24,2001:db8::/32")
		direct := newGateway(t, sb)
		direct.start(apiKeySite(direct, up, ""))
		proxied := newGateway(t, sb)
		proxied.globals = "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32 ::1/128\n\t\ttrusted_proxies_strict\n\t}\n"
		proxied.start(apiKeySite(proxied, up, ""))
		auth := []string{"Authorization", "Bearer " + k.Key}
		from := func(xff string) []string { return append(auth[:2:2], "X-Forwarded-For", xff) }

		r := get(t, direct.url+"/", from("203.0.113.5")...)
		wantStatus(t, "a spoofed X-Forwarded-For from an untrusted peer", r, http.StatusForbidden)
		if p := r.problem(t); p.Code != "ip_not_allowed" {
			t.Errorf("code %q", p.Code)
		}
		wantUpstream(t, "from an allowed network behind a trusted proxy", get(t, proxied.url+"/", from("203.0.113.5")...))
		wantUpstream(t, "from an allowed IPv6 network behind a trusted proxy", get(t, proxied.url+"/", from("2001:db8::7")...))
		wantStatus(t, "from another network behind a trusted proxy", get(t, proxied.url+"/", from("198.51.100.7")...), http.StatusForbidden)
		wantStatus(t, "from the proxy itself", get(t, proxied.url+"/", auth...), http.StatusForbidden)

		sb.mustCLI("update", k.ID, "--allow-cidr", "127.0.0.1/32,::1/128")
		if ok, _ := pollUntil(10*time.Second, 20*time.Millisecond, func() bool {
			return get(t, direct.url+"/", auth...).status == http.StatusOK
		}); !ok {
			t.Fatal("the new allowlist did not reach the gateway")
		}
		sb.mustCLI("update", k.ID, "--no-allow-cidr")
		if out := sb.mustCLI("show", k.ID).stdout; strings.Contains(out, "Allowed from") {
			t.Errorf("show after --no-allow-cidr:\n%s", out)
		}
	})
}

// TestUpdateFieldsReachTheGateway: on both stores, with the key cached for
// an hour, a running gateway sees an update of the name (the upstream's
// placeholder header), of the key's own rate limit (set and removed) and
// of its expiry, each within seconds; each update is audited.
func TestUpdateFieldsReachTheGateway(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		k := sb.createKey("before")
		g := newGateway(t, sb)
		g.start(g.site(fmt.Sprintf("\tapi_key {\n\t\t%s\n\t\tcache {\n\t\t\tttl 1h\n\t\t}\n\t}\n\treverse_proxy %s {\n\t\theader_up X-Key-Name {api_key.name}\n\t}",
			sb.storeOptions(), up.hostPort())))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		wantUpstream(t, "before the updates", bearer(t, g.url+"/", k.Key))
		seen := func(what string, ok func(r response) bool) {
			t.Helper()
			if found, took := pollUntil(10*time.Second, 20*time.Millisecond, func() bool { return ok(bearer(t, g.url+"/", k.Key)) }); !found {
				t.Fatalf("the gateway did not see %s within 10s", what)
			} else {
				t.Logf("%s seen after %v", what, took)
			}
		}

		sb.mustCLI("update", k.ID, "--name", "after")
		seen("the new name", func(r response) bool {
			reqs := up.requests()
			return r.status == http.StatusOK && reqs[len(reqs)-1].Header.Get("X-Key-Name") == "after"
		})
		sb.mustCLI("update", k.ID, "--rate", "1/m")
		seen("the key's rate limit", func(r response) bool { return r.status == http.StatusTooManyRequests })
		sb.mustCLI("update", k.ID, "--no-limits")
		seen("the rate limit removed", func(r response) bool { return r.status == http.StatusOK })
		sb.mustCLI("update", k.ID, "--expires", "2s")
		seen("the new expiry", func(r response) bool {
			return r.status == http.StatusUnauthorized && r.problem(t).Code == "expired_key"
		})
		if res := sb.mustCLI("audit", "--key", k.ID, "--json"); strings.Count(res.stdout, `"action": "update"`)+strings.Count(res.stdout, `"action":"update"`) != 4 {
			t.Errorf("audit of the key, want 4 updates:\n%s", res.stdout)
		}
	})
}
