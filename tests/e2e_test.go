package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// apiKeySite is the usual gateway: api_key with the sandbox's store plus
// options (api_key subdirectives), then reverse_proxy to up.
func apiKeySite(g *gateway, up *upstream, options string) string {
	return g.site(fmt.Sprintf("\tapi_key {\n\t\t%s\n\t\t%s\n\t}\n\treverse_proxy %s",
		g.sb.storeOptions(), options, up.hostPort()))
}

// malformedVariants derives keys that fail each format check from a
// valid key; each keeps most of the original, secret included.
func malformedVariants(key string) map[string]string {
	flip := func(c byte) byte {
		if c == 'A' {
			return 'B'
		}
		return 'A'
	}
	badSum := []byte(key)
	badSum[len(badSum)-1] = flip(badSum[len(badSum)-1])
	badChar := []byte(key)
	badChar[20] = '-' // inside the secret
	return map[string]string{
		"wrong prefix": "xx" + key[2:],
		"too long":     key + "A",
		"too short":    key[:len(key)-1],
		"bad checksum": string(badSum),
		"bad char":     string(badChar),
	}
}

func TestAnswers(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		// A 1s cache TTL makes a revocation visible within a second.
		g.start(apiKeySite(g, up, "cache {\n\t\t\tttl 1s\n\t\t}"))

		// The expiring key first: its three seconds run out while the rest
		// is checked.
		expiring := sb.createKey("expiring", "--expires", "3s")
		valid := sb.createKey("valid")
		revokedEarly := sb.createKey("revoked before use")
		sb.revoke(revokedEarly.ID)
		revokedLate := sb.createKey("revoked after use")
		unknown := unknownKey(t)

		missing := get(t, g.url+"/orders")
		wantStatus(t, "no key", missing, http.StatusUnauthorized)
		if got, want := missing.header.Get("WWW-Authenticate"), `Bearer realm="api"`; got != want {
			t.Errorf("no key: WWW-Authenticate %q, want %q", got, want)
		}
		if p := missing.problem(t); p.Code != "missing_key" || p.Status != http.StatusUnauthorized {
			t.Errorf("no key: problem %+v, want code missing_key, status 401", p)
		}

		wantUpstream(t, "valid key", bearer(t, g.url+"/orders", valid.Key))
		wantUpstream(t, "key to be revoked after use", bearer(t, g.url+"/orders", revokedLate.Key))

		// Every refused key gets the same bytes: a client must not learn
		// whether a key exists or was revoked.
		refused := map[string]string{"unknown": unknown, "revoked": revokedEarly.Key}
		for name, k := range malformedVariants(valid.Key) {
			refused["malformed: "+name] = k
		}
		var first response
		var firstName string
		for name, k := range refused {
			r := bearer(t, g.url+"/orders", k)
			wantStatus(t, name, r, http.StatusUnauthorized)
			if p := r.problem(t); p.Code != "invalid_key" {
				t.Errorf("%s: code %q, want invalid_key", name, p.Code)
			}
			if first.body == nil {
				first, firstName = r, name
				if got, want := r.header.Get("WWW-Authenticate"), `Bearer realm="api", error="invalid_token"`; got != want {
					t.Errorf("%s: WWW-Authenticate %q, want %q", name, got, want)
				}
				continue
			}
			if !bytes.Equal(r.body, first.body) {
				t.Errorf("%s and %s got different bodies:\n%s\n%s", name, firstName, r.body, first.body)
			}
			if r.header.Get("WWW-Authenticate") != first.header.Get("WWW-Authenticate") {
				t.Errorf("%s and %s got different WWW-Authenticate: %q, %q", name, firstName,
					r.header.Get("WWW-Authenticate"), first.header.Get("WWW-Authenticate"))
			}
		}

		// A key revoked while cached is refused once its entry's TTL (1s)
		// has run out; allow 2s more for a slow machine.
		sb.revoke(revokedLate.ID)
		var last response
		ok, took := pollUntil(3*time.Second, 100*time.Millisecond, func() bool {
			last = bearer(t, g.url+"/orders", revokedLate.Key)
			return last.status == http.StatusUnauthorized
		})
		if !ok {
			t.Fatalf("key revoked after use still answered %d after %v: %s", last.status, took, last.body)
		}
		if !bytes.Equal(last.body, first.body) || last.header.Get("WWW-Authenticate") != first.header.Get("WWW-Authenticate") {
			t.Errorf("key revoked after use got another answer than unknown keys:\n%s\n%s", last.body, first.body)
		}

		wait := time.Until(expiring.ExpiresAt) + 200*time.Millisecond
		if wait > 10*time.Second {
			t.Fatalf("expiring key expires at %v, far later than asked", expiring.ExpiresAt)
		}
		time.Sleep(wait)
		expired := bearer(t, g.url+"/orders", expiring.Key)
		wantStatus(t, "expired key", expired, http.StatusUnauthorized)
		if p := expired.problem(t); p.Code != "expired_key" {
			t.Errorf("expired key: code %q, want expired_key", p.Code)
		}
		if h := expired.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
			t.Errorf("expired key: WWW-Authenticate %q lacks error=\"invalid_token\"", h)
		}

		// Only accepted keys reached the upstream: the valid one and the
		// revoked one before its revocation took effect.
		for _, r := range up.requests() {
			if id := r.Header.Get("X-Api-Key-Id"); id != valid.ID && id != revokedLate.ID {
				t.Errorf("upstream got a request with key id %q:\n%s", id, r)
			}
		}
	})
}

func TestUpstreamNeverSeesKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, "from bearer\n\t\tfrom header X-API-Key\n\t\tfrom query api_key\n\t\tfrom cookie api_key"))
		k := sb.createKey("client")

		cases := []struct {
			name       string
			path       string
			header     []string
			wantQuery  string
			wantCookie string
			wantAuthz  string
		}{
			{name: "bearer", path: "/b?x=1", header: []string{"Authorization", "Bearer " + k.Key},
				wantQuery: "x=1"},
			{name: "header", path: "/h", header: []string{"X-API-Key", k.Key, "Authorization", "Basic dXNlcjpwYXNz"},
				wantAuthz: "Basic dXNlcjpwYXNz"},
			// Order, repeats and encoding of the other parameters must
			// survive: legacy upstreams may care.
			{name: "query", path: "/q?z=1&api_key=" + k.Key + "&a=%2F%20b&z=0&empty=&flag",
				wantQuery: "z=1&a=%2F%20b&z=0&empty=&flag"},
			{name: "cookie", path: "/c", header: []string{"Cookie", "session=s1; api_key=" + k.Key + "; theme=dark"},
				wantCookie: "session=s1; theme=dark"},
		}
		for _, c := range cases {
			wantUpstream(t, c.name, get(t, g.url+c.path, c.header...))
		}

		reqs := up.requests()
		if len(reqs) != len(cases) {
			t.Fatalf("upstream got %d requests, want %d", len(reqs), len(cases))
		}
		for i, r := range reqs {
			all := r.String()
			if strings.Contains(all, k.Key) || strings.Contains(all, secretOf(k.Key)) {
				t.Errorf("%s: the upstream received the key:\n%s", cases[i].name, all)
			}
			c := cases[i]
			if r.RawQuery != c.wantQuery {
				t.Errorf("%s: upstream query %q, want %q", c.name, r.RawQuery, c.wantQuery)
			}
			wantURI := strings.SplitN(c.path, "?", 2)[0]
			if c.wantQuery != "" {
				wantURI += "?" + c.wantQuery
			}
			if r.RequestURI != wantURI {
				t.Errorf("%s: upstream request URI %q, want %q", c.name, r.RequestURI, wantURI)
			}
			if got := r.Header.Values("Cookie"); c.wantCookie != "" && (len(got) != 1 || got[0] != c.wantCookie) {
				t.Errorf("%s: upstream Cookie %q, want [%q]", c.name, got, c.wantCookie)
			} else if c.wantCookie == "" && len(got) != 0 {
				t.Errorf("%s: upstream got Cookie %q, want none", c.name, got)
			}
			if got := r.Header.Values("Authorization"); c.wantAuthz != "" && (len(got) != 1 || got[0] != c.wantAuthz) {
				t.Errorf("%s: upstream Authorization %q, want [%q]", c.name, got, c.wantAuthz)
			} else if c.wantAuthz == "" && len(got) != 0 {
				t.Errorf("%s: upstream got Authorization %q, want none", c.name, got)
			}
			if got := r.Header.Values("X-Api-Key"); len(got) != 0 {
				t.Errorf("%s: upstream got X-Api-Key %q", c.name, got)
			}
			if got := r.Header.Get("X-Api-Key-Id"); got != k.ID {
				t.Errorf("%s: upstream X-Api-Key-Id %q, want %q", c.name, got, k.ID)
			}
		}
	})
}

func TestClientCannotForgeIdentity(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, ""))
		owned := sb.createKey("owned", "--owner", "acme")
		ownerless := sb.createKey("ownerless")

		for _, k := range []issuedKey{owned, ownerless} {
			req := newRequest(t, g.url+"/whoami",
				"Authorization", "Bearer "+k.Key,
				"X-Api-Key-Id", "forged",
				"X-Api-Key-Id", "forged-too",
				"X-Api-Key-Owner", "forged")
			// A header name in another case is the same header.
			req.Header["x-api-key-owner"] = []string{"forged-lowercase"}
			wantUpstream(t, k.Name, do(t, req))
		}

		reqs := up.requests()
		if len(reqs) != 2 {
			t.Fatalf("upstream got %d requests, want 2", len(reqs))
		}
		if got := reqs[0].Header.Values("X-Api-Key-Id"); len(got) != 1 || got[0] != owned.ID {
			t.Errorf("owned key: upstream X-Api-Key-Id %q, want [%q]", got, owned.ID)
		}
		if got := reqs[0].Header.Values("X-Api-Key-Owner"); len(got) != 1 || got[0] != "acme" {
			t.Errorf("owned key: upstream X-Api-Key-Owner %q, want [acme]", got)
		}
		if got := reqs[1].Header.Values("X-Api-Key-Id"); len(got) != 1 || got[0] != ownerless.ID {
			t.Errorf("ownerless key: upstream X-Api-Key-Id %q, want [%q]", got, ownerless.ID)
		}
		if got, ok := reqs[1].Header["X-Api-Key-Owner"]; ok {
			t.Errorf("ownerless key: upstream got X-Api-Key-Owner %q, want none", got)
		}
		for _, r := range reqs {
			if strings.Contains(r.String(), "forged") {
				t.Errorf("a forged identity header reached the upstream:\n%s", r)
			}
		}
	})
}

func TestScopes(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, "scopes orders:read"))
	reader := sb.createKey("reader", "--scopes", "orders:read,orders:write")
	other := sb.createKey("other", "--scopes", "invoices:read")
	none := sb.createKey("none")

	wantUpstream(t, "key with the scope", bearer(t, g.url+"/orders", reader.Key))
	for _, k := range []issuedKey{other, none} {
		r := bearer(t, g.url+"/orders", k.Key)
		wantStatus(t, k.Name, r, http.StatusForbidden)
		if p := r.problem(t); p.Code != "insufficient_scope" {
			t.Errorf("%s: code %q, want insufficient_scope", k.Name, p.Code)
		}
		if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, `scope="orders:read"`) {
			t.Errorf("%s: WWW-Authenticate %q lacks the insufficient_scope error and scope", k.Name, h)
		}
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("upstream got %d requests, want 1", n)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	base := apiKeySite(g, up, "")
	g.start(base)
	k := sb.createKey("steady")
	wantUpstream(t, "before reload", bearer(t, g.url+"/", k.Key))

	// Requests keep flowing while the config is replaced; every answer
	// must be the upstream's. A connection can still be reset before any
	// answer: on Linux, Caddy's listener handover (SO_REUSEPORT) drops
	// connections queued on the old socket. That is Caddy's, not the
	// handler's, so such a request is retried; a refusal (401, 503…) is
	// never retried.
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answered, resets, byOld, byNew atomic.Int64
	var failures sync.Map
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10000; i++ { // bounded; stop ends it much sooner
			select {
			case <-stop:
				return
			default:
			}
			var res *http.Response
			var err error
			for attempt := 0; attempt < 3; attempt++ {
				req, _ := http.NewRequest(http.MethodGet, g.url+"/during", nil)
				req.Header.Set("Authorization", "Bearer "+k.Key)
				if res, err = client.Do(req); err == nil {
					break
				}
				resets.Add(1)
			}
			if err != nil {
				failures.Store(i, err.Error())
				continue
			}
			res.Body.Close()
			answered.Add(1)
			if res.Header.Get("X-Reloaded") == "yes" {
				byNew.Add(1)
			} else {
				byOld.Add(1)
			}
			if res.StatusCode != http.StatusOK {
				failures.Store(i, res.Status)
			}
		}
	}()

	// An equivalent config with an unrelated addition that shows it took
	// effect.
	// The stream of requests must be answered by the old config before
	// the reload and by the new one after it, without a gap: otherwise
	// nothing was shown about requests during the reload.
	if ok, _ := pollUntil(10*time.Second, 5*time.Millisecond, func() bool { return byOld.Load() > 0 }); !ok {
		t.Fatal("no request was answered before the reload")
	}
	reloaded := g.site(fmt.Sprintf("\theader X-Reloaded yes\n\tapi_key {\n\t}\n\treverse_proxy %s", up.hostPort()))
	if res := g.reload(reloaded); res.code != 0 {
		t.Fatalf("reload failed: %s\nlog:\n%s", res, g.log())
	}
	if ok, _ := pollUntil(10*time.Second, 5*time.Millisecond, func() bool { return byNew.Load() > 0 }); !ok {
		t.Error("no request of the stream was answered by the new config")
	}
	close(stop)
	wg.Wait()
	failures.Range(func(i, err any) bool {
		t.Errorf("request %d during reload: %v", i, err)
		return true
	})
	t.Logf("%d requests answered around the reload (%d by the old config, %d by the new); %d connection errors retried",
		answered.Load(), byOld.Load(), byNew.Load(), resets.Load())
	r := bearer(t, g.url+"/", k.Key)
	wantUpstream(t, "after reload", r)
	if r.header.Get("X-Reloaded") != "yes" {
		t.Fatalf("the reloaded config is not serving (no X-Reloaded header)")
	}

	// A Caddyfile that does not parse is refused by the CLI; one that
	// parses but cannot be provisioned is refused by Caddy, which keeps
	// the old config (and its key store) running. In the last case the
	// failing handler comes after one that took a share of the running
	// config's store and cache, which must give it back without closing
	// them.
	badStore := "\tapi_key {\n\t\tdatabase mysql://nope\n\t\tpepper " + randomPepper() + "\n\t}\n"
	broken := map[string]string{
		"syntax":    g.site("\tapi_key {\n\t\tunknown_option 1\n\t}\n\treverse_proxy " + up.hostPort()),
		"provision": g.site(badStore + "\treverse_proxy " + up.hostPort()),
		"provision after a shared store": g.site("\tapi_key\n\thandle /never/* {\n" + badStore +
			"\t}\n\treverse_proxy " + up.hostPort()),
	}
	wantErr := map[string]string{"syntax": "unknown_option", "provision": "unsupported database",
		"provision after a shared store": "unsupported database"}
	for name, cfg := range broken {
		res := g.reload(cfg)
		if res.code == 0 {
			t.Errorf("%s: reload of a broken Caddyfile succeeded: %s", name, res)
		}
		if !strings.Contains(res.stderr+res.stdout, wantErr[name]) {
			t.Errorf("%s: reload error does not say what is wrong: %s", name, res)
		}
		r := bearer(t, g.url+"/", k.Key)
		wantUpstream(t, "after failed reload ("+name+")", r)
		if r.header.Get("X-Reloaded") != "yes" {
			t.Errorf("after failed reload (%s) the previous config is no longer serving", name)
		}
	}
	// A key the cache has never seen needs the store: it must still be open.
	fresh := sb.createKey("after failed reloads")
	wantUpstream(t, "new key after failed reloads", bearer(t, g.url+"/", fresh.Key))
}
