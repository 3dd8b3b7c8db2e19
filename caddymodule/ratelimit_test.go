package caddymodule

import (
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
)

// TestServeHTTPRateLimit: a route's rate limit lets each key's burst
// through, then answers 429 rate_limited with Retry-After until the rate
// allows another request, with RateLimit-Policy and RateLimit headers on
// every answer and placeholders for other handlers; other keys are not
// affected.
func TestServeHTTPRateLimit(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	other, _ := ts.issue(t, keystore.NewKeyParams{})
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	h := ts.handler(t, &Handler{clock: clk, RateLimit: &RateLimit{Rate: "2/s"}})

	for i, want := range []string{`"key";r=1;t=1`, `"key";r=0;t=1`} {
		s := serve(h, newRequest("/", bearer(key)))
		if s.next == nil {
			t.Fatalf("request %d of the burst refused: %d %s", i+1, s.rec.Code, s.rec.Body)
		}
		if got := s.rec.Header().Get("RateLimit"); got != want {
			t.Errorf("request %d: RateLimit %q, want %q", i+1, got, want)
		}
		if got := s.rec.Header().Get("RateLimit-Policy"); got != `"key";q=2;w=1` {
			t.Errorf("RateLimit-Policy %q", got)
		}
		if v, _ := s.placeholder("api_key.ratelimit.remaining"); v != want[len(`"key";r=`):len(`"key";r=`)+1] {
			t.Errorf("{api_key.ratelimit.remaining} = %q", v)
		}
		if v, _ := s.placeholder("api_key.ratelimit.policy"); v != "2/s" {
			t.Errorf("{api_key.ratelimit.policy} = %q", v)
		}
	}
	clk.Advance(100 * time.Millisecond)
	s := serve(h, newRequest("/", bearer(key)))
	checkProblem(t, s, http.StatusTooManyRequests, CodeRateLimited)
	if got := s.rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1 (400ms rounded up)", got)
	}
	if got := s.rec.Header().Get("RateLimit"); got != `"key";r=0;t=1` {
		t.Errorf("RateLimit on the refusal %q", got)
	}
	if s := serve(h, newRequest("/", bearer(other))); s.next == nil {
		t.Fatalf("another key refused: %d", s.rec.Code)
	}
	clk.Advance(400 * time.Millisecond)
	if s := serve(h, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("refused once the rate allows a request again: %d %s", s.rec.Code, s.rec.Body)
	}
}

// TestRateLimitSpendsNothingOnRefusals: a request the status or scope
// checks refuse leaves the key's limit untouched; a route without a limit
// sends no headers.
func TestRateLimitSpendsNothingOnRefusals(t *testing.T) {
	ts := newTestStore(t)
	unscoped, _ := ts.issue(t, keystore.NewKeyParams{})
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	h := ts.handler(t, &Handler{clock: clk, Scopes: []string{"write"}, RateLimit: &RateLimit{Rate: "1/h"}})
	for i := 0; i < 5; i++ {
		checkProblem(t, serve(h, newRequest("/", bearer(unscoped))), http.StatusForbidden, CodeInsufficientScope)
	}
	if n := h.limiter.keys.Len(); n != 0 {
		t.Errorf("refused requests left %d keys in the limiter", n)
	}
	free := ts.handler(t, &Handler{clock: clk})
	s := serve(free, newRequest("/", bearer(unscoped)))
	if s.next == nil || s.rec.Header().Get("RateLimit") != "" || s.rec.Header().Get("RateLimit-Policy") != "" {
		t.Errorf("a route without a limit: next %v, headers %v", s.next != nil, s.rec.Header())
	}
}

// TestRateLimitHeadersOff: rate_limit_headers off keeps the limit and
// drops the headers.
func TestRateLimitHeadersOff(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	h := ts.handler(t, &Handler{clock: clk, RateLimit: &RateLimit{Rate: "1/m"}, RateLimitHeaders: "off"})
	if s := serve(h, newRequest("/", bearer(key))); s.next == nil || s.rec.Header().Get("RateLimit") != "" {
		t.Fatalf("first request: next %v, RateLimit %q", s.next != nil, s.rec.Header().Get("RateLimit"))
	}
	s := serve(h, newRequest("/", bearer(key)))
	checkProblem(t, s, http.StatusTooManyRequests, CodeRateLimited)
	if s.rec.Header().Get("RateLimit") != "" || s.rec.Header().Get("RateLimit-Policy") != "" {
		t.Errorf("headers sent although off: %v", s.rec.Header())
	}
	if got := s.rec.Header().Get("Retry-After"); got != "60" {
		t.Errorf("Retry-After %q, want 60", got)
	}
}

// TestRateLimitSharedAcrossHandlers: two handlers on one store (two
// routes, or the old and new configuration during a reload) share each
// key's state.
func TestRateLimitSharedAcrossHandlers(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	h1 := ts.handler(t, &Handler{clock: clk, RateLimit: &RateLimit{Rate: "1/m"}})
	h2 := ts.handler(t, &Handler{clock: clk, RateLimit: &RateLimit{Rate: "1/m"}})
	if s := serve(h1, newRequest("/", bearer(key))); s.next == nil {
		t.Fatal("first request refused")
	}
	checkProblem(t, serve(h2, newRequest("/", bearer(key))), http.StatusTooManyRequests, CodeRateLimited)
}
