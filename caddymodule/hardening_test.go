package caddymodule

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
)

// TestConnectionCannotDropIdentity: reverse_proxy deletes every header a
// client names in Connection, after this handler ran. Naming the identity
// headers there must not take them away from the upstream.
func TestConnectionCannotDropIdentity(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{Owner: "acme"})
	h := ts.handler(t, &Handler{IDHeader: "X-Who"})
	s := serve(h, newRequest("/", bearer(key),
		"Connection: keep-alive, x-api-key-id, X-Api-Key-Owner",
		"Connection: x-who, X-Trace"))
	if s.next == nil {
		t.Fatalf("refused: %d %s", s.rec.Code, s.rec.Body)
	}
	// What reverse_proxy does next.
	out := s.next.Header.Clone()
	for _, v := range out["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			out.Del(strings.TrimSpace(tok))
		}
	}
	if got := out.Get("X-Who"); got != rec.ID {
		t.Errorf("X-Who after hop-by-hop removal = %q, want %q", got, rec.ID)
	}
	if got := out.Get("X-Api-Key-Owner"); got != "acme" {
		t.Errorf("X-Api-Key-Owner after hop-by-hop removal = %q, want acme", got)
	}
	if got := s.next.Header.Values("Connection"); strings.Join(got, "|") != "keep-alive|X-Trace" {
		t.Errorf("Connection = %q; other tokens must stay", got)
	}
}

// trailerBody is a request body that, like net/http, fills in the
// request's trailers when it reaches its end, with whatever the client
// sent, declared or not.
type trailerBody struct {
	io.Reader
	trailer http.Header
	sent    http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		for k, v := range b.sent {
			b.trailer[k] = v
		}
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// TestTrailersCannotCarryIdentity: a client must not smuggle an identity
// header or a key to the upstream as a request trailer, declared or not.
func TestTrailersCannotCarryIdentity(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	h := ts.handler(t, &Handler{Sources: []KeySource{{From: FromBearer}, {From: FromHeader, Name: "X-API-Key"}}})
	r := newRequest("/", bearer(key))
	r.Method = http.MethodPost
	declared := http.Header{"X-Api-Key-Id": nil, "X-Checksum": nil}
	r.Trailer = declared
	r.Body = &trailerBody{Reader: strings.NewReader("payload"), trailer: declared, sent: http.Header{
		"X-Api-Key-Id":    {"admin"},
		"X-Api-Key-Owner": {"admin"},
		"Authorization":   {"Bearer " + key},
		"X-Api-Key":       {key},
		"X_api_key_id":    {"admin"},
		"X.Api.Key.Owner": {"admin"},
		"X-Checksum":      {"abc"},
	}}
	s := serve(h, r)
	if s.next == nil {
		t.Fatalf("refused: %d %s", s.rec.Code, s.rec.Body)
	}
	if _, ok := s.next.Trailer["X-Api-Key-Id"]; ok {
		t.Error("the declared identity trailer is still announced")
	}
	body, err := io.ReadAll(s.next.Body)
	if err != nil || string(body) != "payload" {
		t.Fatalf("body %q, %v", body, err)
	}
	for _, name := range []string{"X-Api-Key-Id", "X-Api-Key-Owner", "Authorization", "X-Api-Key", "X_api_key_id", "X.Api.Key.Owner"} {
		if v, ok := s.next.Trailer[name]; ok {
			t.Errorf("trailer %s = %q reaches the upstream", name, v)
		}
	}
	if got := s.next.Trailer.Get("X-Checksum"); got != "abc" {
		t.Errorf("harmless trailer X-Checksum = %q, want abc", got)
	}
}

// TestKeyNeverForwarded: whichever source decided, no well-formed key
// reaches the upstream in Authorization, under any scheme.
func TestKeyNeverForwarded(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	other, _ := ts.issue(t, keystore.NewKeyParams{})
	h := ts.handler(t, &Handler{Sources: []KeySource{{From: FromHeader, Name: "X-API-Key"}, {From: FromQuery, Name: "api_key"}}})
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		auth string
		keep bool
	}{
		{"Bearer " + other, false},
		{"bearer " + other, false},
		{"Token " + other, false},
		{other, false},
		{basic(other + ":"), false},
		{basic("user:" + other), false},
		{"Basic dXNlcjpwYXNz", true},
		{"Token " + other + ", Token " + other, false},
		{"Token key=" + other, false},
		{`Token "` + other + `"`, false},
		{`ApiKey apikey="` + other + `"`, false},
		{"Token\t" + other, false},
		{basic(other), false},
		{"Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", true},
		{"Bearer x" + other, true},               // glued to another word: not a key
		{"Bearer " + other[:len(other)-1], true}, // not a well-formed key: the upstream's business
	} {
		s := serve(h, newRequest("/?api_key="+key, "Authorization: "+c.auth))
		if s.next == nil {
			t.Fatalf("refused: %d %s", s.rec.Code, s.rec.Body)
		}
		got := s.next.Header.Get("Authorization")
		if c.keep && got != c.auth {
			t.Errorf("Authorization %q was changed to %q", c.auth, got)
		}
		if !c.keep && got != "" {
			t.Errorf("Authorization carrying a key was forwarded: %q", got)
		}
		if strings.Contains(s.next.URL.RawQuery, key) {
			t.Errorf("the key is still in the query: %q", s.next.URL.RawQuery)
		}
	}
	// Keys in query parameters the gateway does not read go too; the
	// other parameters stay as sent.
	for _, c := range []struct{ query, want string }{
		{"api_key=" + key + "&x=1;api_key=" + other + "&keep=1", "keep=1"},
		{"api_key=" + key + "&api.key=" + other, ""},
		{"api_key=" + key + "&token=" + strings.ReplaceAll(other, "_", "%5F") + "&a=%2F", "a=%2F"},
		{"api_key=" + key + "&near=" + other[:len(other)-1], "near=" + other[:len(other)-1]},
	} {
		s := serve(h, newRequest("/?"+c.query))
		if s.next == nil {
			t.Fatalf("refused: %d %s", s.rec.Code, s.rec.Body)
		}
		if s.next.URL.RawQuery != c.want || s.next.RequestURI != "/"+map[bool]string{true: "?" + c.want, false: ""}[c.want != ""] {
			t.Errorf("query %q forwarded as %q (%q), want %q", c.query, s.next.URL.RawQuery, s.next.RequestURI, c.want)
		}
	}
}

// withClientIP puts Caddy's client IP (after trusted_proxies) into r.
func withClientIP(r *http.Request, ip string) *http.Request {
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	return r.WithContext(ctx)
}

// TestFailedAuthBudget: past its budget of failed checks, a client gets
// 429 with Retry-After for every key the cache cannot answer, without a
// store query; cached keys keep working and other clients are unaffected.
func TestFailedAuthBudget(t *testing.T) {
	ts := newTestStore(t)
	cached, _ := ts.issue(t, keystore.NewKeyParams{})
	uncached, _ := ts.issue(t, keystore.NewKeyParams{})
	noDelay := caddy.Duration(0) // TestFailedAuthDelay tests the delay
	h := ts.handler(t, &Handler{FailedAuthLimit: &FailedAuthLimit{Rate: "1/h", Burst: 3, Delay: &noDelay}})
	waitWatching(t, h) // its start purges the cache
	const attacker, neighbour = "198.51.100.7", "203.0.113.9"
	if s := serve(h, withClientIP(newRequest("/", bearer(cached)), attacker)); s.next == nil {
		t.Fatalf("valid key refused: %d", s.rec.Code)
	}
	for i := 0; i < 3; i++ {
		checkProblem(t, serve(h, withClientIP(newRequest("/", bearer(ts.unknownKey(t))), attacker)), http.StatusUnauthorized, CodeInvalidKey)
	}
	queries := h.verifier.Stats.StoreQueries.Load()
	for name, r := range map[string]*http.Request{
		"unknown key":    newRequest("/", bearer(ts.unknownKey(t))),
		"malformed key":  newRequest("/", bearer("kg_nonsense")),
		"uncached valid": newRequest("/", bearer(uncached)),
	} {
		s := serve(h, withClientIP(r, attacker))
		checkProblem(t, s, http.StatusTooManyRequests, CodeTooManyFailures)
		if ra := s.rec.Header().Get("Retry-After"); ra != "3600" {
			t.Errorf("%s: Retry-After %q, want 3600", name, ra)
		}
	}
	if q := h.verifier.Stats.StoreQueries.Load(); q != queries {
		t.Errorf("a client past its budget made %d store queries", q-queries)
	}
	if s := serve(h, withClientIP(newRequest("/", bearer(cached)), attacker)); s.next == nil {
		t.Errorf("a cached valid key was refused for a client past its budget: %d", s.rec.Code)
	}
	if s := serve(h, withClientIP(newRequest("/", bearer(uncached)), neighbour)); s.next == nil {
		t.Errorf("another client was refused: %d %s", s.rec.Code, s.rec.Body)
	}
	// The budget goes by Caddy's client IP, not by the peer address.
	if s := serve(h, withClientIP(newRequest("/", bearer(ts.unknownKey(t))), neighbour)); s.rec.Code != http.StatusUnauthorized {
		t.Errorf("the neighbour's first failure got %d", s.rec.Code)
	}

	// Store lookups of keys that exist are charged and refunded: a
	// client with many valid keys never runs out.
	const legit = "192.0.2.44"
	for i := 0; i < 10; i++ {
		k, _ := ts.issue(t, keystore.NewKeyParams{})
		if s := serve(h, withClientIP(newRequest("/", bearer(k)), legit)); s.next == nil {
			t.Fatalf("valid uncached key %d of a client with a budget of 3: %d", i+1, s.rec.Code)
		}
	}

	off := ts.handler(t, &Handler{FailedAuthLimit: &FailedAuthLimit{Off: true}})
	for i := 0; i < 150; i++ {
		checkProblem(t, serve(off, withClientIP(newRequest("/", bearer(ts.unknownKey(t))), attacker)), http.StatusUnauthorized, CodeInvalidKey)
	}
}

// TestFailedAuthDelay: the 429 answer to a client out of its budget is
// held for the delay, so that a client waiting for each answer (a flood
// on HTTP/1.1 connections) costs the gateway one answer per delay, and
// its Retry-After counts from the answer. The hold ends early when the
// client goes away, the server shuts down or the config is unloaded, and
// lasts at most half the server's write timeout. No answer is held when
// as many as allowed are held already, in all or for the client, or with
// delay 0 (the default with auth_server). Answers that do not come from
// a spent budget are never held.
func TestFailedAuthDelay(t *testing.T) {
	ts := newTestStore(t)
	valid, _ := ts.issue(t, keystore.NewKeyParams{})
	limit := func(d time.Duration) *FailedAuthLimit {
		cd := caddy.Duration(d)
		return &FailedAuthLimit{Rate: "1/h", Burst: 1, Delay: &cd}
	}
	// A hold that runs its course where it should not takes long: far
	// beyond any machine's slowness.
	const long = 20 * time.Second
	timed := func(h *Handler, r *http.Request) (*served, time.Duration) {
		start := time.Now()
		s := serve(h, r)
		return s, time.Since(start)
	}
	notHeld := func(took time.Duration, why string) {
		t.Helper()
		if took >= long/2 {
			t.Errorf("%s, yet the answer was held for %s", why, took)
		}
	}
	req := func(key, ip string) *http.Request { return withClientIP(newRequest("/", bearer(key)), ip) }
	overBudget := func(t *testing.T, s *served) {
		t.Helper()
		checkProblem(t, s, http.StatusTooManyRequests, CodeTooManyFailures)
	}
	// spend spends the client's budget with h, checking that its failure
	// within the budget is answered at once.
	spend := func(h *Handler, ip string) {
		t.Helper()
		s, took := timed(h, req(ts.unknownKey(t), ip))
		checkProblem(t, s, http.StatusUnauthorized, CodeInvalidKey)
		notHeld(took, "a failure within the budget")
	}
	held := func() float64 { return counterValue(heldCounters["held"]) }
	full := func() float64 { return counterValue(heldCounters["full"]) }

	t.Run("held", func(t *testing.T) {
		const delay = 300 * time.Millisecond
		clk := clock.NewFake(time.Now())
		// The budget's clock stands still: its wait is exactly 1h.
		h := ts.handler(t, &Handler{FailedAuthLimit: limit(delay), clock: clk})
		spend(h, "198.51.100.1")
		for _, key := range []string{ts.unknownKey(t), "kg_nonsense"} {
			before := held()
			s, took := timed(h, req(key, "198.51.100.1"))
			overBudget(t, s)
			if took < delay {
				t.Errorf("the answer to a client out of budget came after %s, want at least %s", took, delay)
			}
			if got := held() - before; got != 1 {
				t.Errorf("held answers counted %v, want 1", got)
			}
		}
		// Retry-After counts from the answer: a wait shorter than the hold
		// is over when the answer is sent.
		short := &FailedAuthLimit{Rate: "1/s", Burst: 1, Delay: limit(time.Second + 200*time.Millisecond).Delay}
		hShort := ts.handler(t, &Handler{FailedAuthLimit: short, clock: clk})
		spend(hShort, "198.51.100.9")
		s, _ := timed(hShort, req(ts.unknownKey(t), "198.51.100.9"))
		overBudget(t, s)
		if ra := s.rec.Header().Get("Retry-After"); ra != "0" {
			t.Errorf("Retry-After %q after a hold longer than the budget's wait of 1s, want 0", ra)
		}
	})

	hLong := ts.handler(t, &Handler{FailedAuthLimit: limit(long)})
	t.Run("only a spent budget is held", func(t *testing.T) {
		s, took := timed(hLong, req(valid, "198.51.100.2"))
		if s.next == nil {
			t.Fatalf("valid key refused: %d", s.rec.Code)
		}
		notHeld(took, "a valid key")
		spend(hLong, "198.51.100.3")
	})

	t.Run("the client goes away", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		s, took := timed(hLong, withClientIP(newRequest("/", bearer(ts.unknownKey(t))).WithContext(ctx), "198.51.100.3"))
		overBudget(t, s)
		notHeld(took, "the client went away")
	})

	t.Run("the config is unloaded", func(t *testing.T) {
		h := ts.handler(t, &Handler{FailedAuthLimit: limit(long)})
		unloaded := make(chan struct{})
		h.done = unloaded
		time.AfterFunc(50*time.Millisecond, func() { close(unloaded) })
		s, took := timed(h, req(ts.unknownKey(t), "198.51.100.3"))
		overBudget(t, s)
		notHeld(took, "the config was unloaded")
	})

	// inServer provisions a handler in srv, as Caddy does, and returns it
	// with the functions it registered to run at srv's shutdown.
	inServer := func(t *testing.T, srv *caddyhttp.Server) (*Handler, []func()) {
		var registered []func()
		saved := onServerShutdown
		onServerShutdown = func(s *caddyhttp.Server, f func()) {
			if s == srv {
				registered = append(registered, f)
			}
			saved(s, f)
		}
		t.Cleanup(func() { onServerShutdown = saved })
		ctx, cancel := testContext(t, nil)
		ctx.Context = context.WithValue(ctx.Context, caddyhttp.ServerCtxKey, srv)
		h := &Handler{Database: ts.dsn, Pepper: testPepper, FailedAuthLimit: limit(long)}
		err := h.Provision(ctx)
		t.Cleanup(func() {
			cancel()
			h.Cleanup()
		})
		if err != nil {
			t.Fatal(err)
		}
		return h, registered
	}

	t.Run("the server shuts down", func(t *testing.T) {
		h, registered := inServer(t, &caddyhttp.Server{})
		if h.shutdown == nil || len(registered) != 1 {
			t.Fatalf("the handler did not register with its server's shutdown (%d functions)", len(registered))
		}
		// As Caddy's server does: the functions go to its http.Server,
		// which runs them when Shutdown begins.
		hs := &http.Server{}
		hs.RegisterOnShutdown(registered[0])
		spend(h, "198.51.100.6")
		time.AfterFunc(50*time.Millisecond, func() { hs.Shutdown(context.Background()) })
		s, took := timed(h, req(ts.unknownKey(t), "198.51.100.6"))
		overBudget(t, s)
		notHeld(took, "the server began to shut down")
	})

	t.Run("write timeout", func(t *testing.T) {
		h, _ := inServer(t, &caddyhttp.Server{WriteTimeout: caddy.Duration(200 * time.Millisecond)})
		spend(h, "198.51.100.7")
		before := held()
		s, took := timed(h, req(ts.unknownKey(t), "198.51.100.7"))
		overBudget(t, s)
		notHeld(took, "the server's write timeout is 200ms")
		if held()-before != 1 {
			t.Error("the answer was not held at all")
		}
	})

	t.Run("caps", func(t *testing.T) {
		saved := holds
		holds = newAnswerHolds(2, 1)
		t.Cleanup(func() { holds = saved })
		spend(hLong, "198.51.100.10")
		spend(hLong, "198.51.100.11")
		spend(hLong, "198.51.100.12")
		// holdOne sends a request from ip that is held until release,
		// once holds counts total.
		holdOne := func(ip string, total int64) (release func()) {
			t.Helper()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				serve(hLong, withClientIP(newRequest("/", bearer(ts.unknownKey(t))).WithContext(ctx), ip))
			}()
			release = func() { cancel(); <-done }
			for deadline := time.Now().Add(long / 2); holds.total.Load() != total; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					release()
					t.Fatalf("the answer to %s was never held", ip)
				}
			}
			return release
		}
		// sentAtOnce checks that ip's answer is not held, for want of room.
		sentAtOnce := func(ip, why string) {
			t.Helper()
			f := full()
			s, took := timed(hLong, req(ts.unknownKey(t), ip))
			overBudget(t, s)
			notHeld(took, why)
			if full()-f != 1 {
				t.Errorf("answers not held for want of room counted %v, want 1", full()-f)
			}
		}
		releaseA := holdOne("198.51.100.10", 1)
		defer releaseA()
		sentAtOnce("198.51.100.10", "the client held as many answers as allowed")
		// Another client is held, then a third finds the process's
		// places all taken.
		releaseB := holdOne("198.51.100.11", 2)
		defer releaseB()
		sentAtOnce("198.51.100.12", "the process held as many answers as allowed")
		releaseA()
		releaseB()
		if n := holds.total.Load(); n != 0 {
			t.Errorf("%d answers still counted as held", n)
		}
	})

	t.Run("delay 0 and auth_server", func(t *testing.T) {
		for name, h := range map[string]*Handler{
			"delay 0":     ts.handler(t, &Handler{FailedAuthLimit: limit(0)}),
			"auth_server": ts.handler(t, &Handler{FailedAuthLimit: &FailedAuthLimit{Rate: "1/h", Burst: 1}, AuthServer: true}),
		} {
			ip := map[string]string{"delay 0": "198.51.100.20", "auth_server": "198.51.100.21"}[name]
			spend(h, ip)
			before := held()
			overBudget(t, serve(h, req(ts.unknownKey(t), ip)))
			if held() != before {
				t.Errorf("%s: an answer was held", name)
			}
		}
		if d := failedAuthDelay(nil, false); d != time.Second {
			t.Errorf("default delay %s, want 1s", d)
		}
	})
}

// TestCookieCrossOrigin: a browser sends a cookie key by itself, so a
// state-changing request authenticated by a cookie must come from the
// site's own pages or an allowed origin.
func TestCookieCrossOrigin(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	sources := []KeySource{{From: FromBearer}, {From: FromCookie, Name: "api_key"}}
	h := ts.handler(t, &Handler{Sources: sources})
	allowing := ts.handler(t, &Handler{Sources: sources, AllowedOrigins: []string{"https://app.example.com"}})
	req := func(method string, header ...string) *http.Request {
		r := newRequest("http://api.example.com/orders", header...)
		r.Method = method
		return r
	}
	cookie := "Cookie: api_key=" + key
	for _, c := range []struct {
		name string
		h    *Handler
		r    *http.Request
		ok   bool
	}{
		{"POST cross-site", h, req("POST", cookie, "Sec-Fetch-Site: cross-site"), false},
		{"DELETE same-site", h, req("DELETE", cookie, "Sec-Fetch-Site: same-site"), false},
		{"PUT foreign Origin", h, req("PUT", cookie, "Origin: https://evil.example"), false},
		{"PATCH Origin null", h, req("PATCH", cookie, "Origin: null"), false},
		{"POST same-origin", h, req("POST", cookie, "Sec-Fetch-Site: same-origin"), true},
		{"POST own Origin", h, req("POST", cookie, "Origin: http://api.example.com"), true},
		{"POST without browser headers", h, req("POST", cookie), true},
		{"GET cross-site", h, req("GET", cookie, "Sec-Fetch-Site: cross-site"), true},
		{"POST cross-site with bearer", h, req("POST", bearer(key), "Sec-Fetch-Site: cross-site"), true},
		{"POST from an allowed origin", allowing, req("POST", cookie, "Sec-Fetch-Site: cross-site", "Origin: https://app.example.com"), true},
		{"POST from another origin", allowing, req("POST", cookie, "Sec-Fetch-Site: cross-site", "Origin: https://evil.example"), false},
	} {
		s := serve(c.h, c.r)
		if c.ok && s.next == nil {
			t.Errorf("%s: refused with %d %s", c.name, s.rec.Code, s.rec.Body)
		}
		if !c.ok {
			t.Run(c.name, func(t *testing.T) { checkProblem(t, s, http.StatusForbidden, CodeCrossOrigin) })
		}
	}
}

// counterValue reads a Prometheus counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
