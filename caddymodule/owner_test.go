package caddymodule

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/ratelimit"
)

// TestOwnerSharedLimits: an owner's rate and quota are spent by all of its
// keys together, on top of each key's own; another owner's keys are not
// affected; a key refused by its owner's limit gives back what it took.
func TestOwnerSharedLimits(t *testing.T) {
	ts := newTestStore(t)
	k1, _ := ts.issue(t, keystore.NewKeyParams{Owner: "acme"})
	k2, rec2 := ts.issue(t, keystore.NewKeyParams{Owner: "acme", Limits: &keystore.Limits{Rate: "10/m"}})
	other, _ := ts.issue(t, keystore.NewKeyParams{Owner: "globex"})
	lc := &keystore.Lifecycle{Store: ts.store}
	if _, err := lc.SetOwnerLimits(context.Background(), "test", "acme", &keystore.Limits{Rate: "3/m", Quota: "4/day"}); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	h := ts.handler(t, &Handler{clock: clk})

	s := serve(h, newRequest("/", bearer(k1)))
	if s.next == nil {
		t.Fatalf("first request refused: %d %s", s.rec.Code, s.rec.Body)
	}
	if got, want := s.rec.Header().Values("RateLimit-Policy"), []string{`"owner";q=3;w=60`, `"owner_quota";q=4;w=86400`}; !slices.Equal(got, want) {
		t.Errorf("RateLimit-Policy %q, want %q", got, want)
	}
	if s := serve(h, newRequest("/", bearer(k2))); s.next == nil {
		t.Fatalf("the owner's second key refused: %d %s", s.rec.Code, s.rec.Body)
	}
	if s := serve(h, newRequest("/", bearer(k1))); s.next == nil {
		t.Fatalf("third request of the owner refused: %d %s", s.rec.Code, s.rec.Body)
	}
	// The owner's rate of 3/m is spent by its two keys together.
	s = serve(h, newRequest("/", bearer(k2)))
	checkProblem(t, s, http.StatusTooManyRequests, CodeRateLimited)
	if got := s.rec.Header().Values("RateLimit"); !slices.Contains(got, `"owner";r=0;t=60`) {
		t.Errorf("RateLimit %q names no spent owner rate", got)
	}
	// k2's own rate (10/m) was given back when its owner's refused it: one
	// request spent it, so this take leaves 10 - 2.
	own, _ := ratelimit.ParsePolicy("10/m", 0)
	if d := h.limiter.keys.Take(rec2.ID, own.Limit(), clk.Now()); d.Remaining != 8 {
		t.Errorf("k2's own rate has %d left, want 8: the refused request kept what it took", d.Remaining)
	}
	if s := serve(h, newRequest("/", bearer(other))); s.next == nil {
		t.Fatalf("another owner's key refused: %d", s.rec.Code)
	}
	// A minute later the rate allows more; the owner's quota of 4 a day
	// has one left, and then none, whichever key asks.
	clk.Advance(time.Minute)
	if s := serve(h, newRequest("/", bearer(k2))); s.next == nil {
		t.Fatalf("fourth request of the day refused: %d %s", s.rec.Code, s.rec.Body)
	}
	s = serve(h, newRequest("/", bearer(k1)))
	checkProblem(t, s, http.StatusTooManyRequests, CodeQuotaExceeded)
	if got := s.rec.Header().Get("Retry-After"); got != "43140" {
		t.Errorf("Retry-After %q, want the seconds to midnight UTC (43140)", got)
	}
}
