package caddymodule

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
)

// TestServeHTTPQuota: a key's daily quota lets that many requests through
// in the UTC day, with RateLimit headers, then answers 429 quota_exceeded
// with Retry-After until midnight UTC; the next day it is whole again.
// The counts reach the store.
func TestServeHTTPQuota(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{Limits: &keystore.Limits{Quota: "3/day"}})
	clk := clock.NewFake(time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC))
	h := ts.handler(t, &Handler{clock: clk})
	for i := 0; i < 3; i++ {
		s := serve(h, newRequest("/", bearer(key)))
		if s.next == nil {
			t.Fatalf("request %d of a quota of 3 refused: %d %s", i+1, s.rec.Code, s.rec.Body)
		}
		if got, want := s.rec.Header().Get("RateLimit-Policy"), `"quota";q=3;w=86400`; got != want {
			t.Errorf("RateLimit-Policy %q, want %q", got, want)
		}
		if got, want := s.rec.Header().Get("RateLimit"), `"quota";r=`+string(rune('2'-i))+";t=3600"; got != want {
			t.Errorf("request %d: RateLimit %q, want %q", i+1, got, want)
		}
	}
	s := serve(h, newRequest("/", bearer(key)))
	checkProblem(t, s, http.StatusTooManyRequests, CodeQuotaExceeded)
	if got := s.rec.Header().Get("Retry-After"); got != "3600" {
		t.Errorf("Retry-After %q, want 3600 (midnight UTC)", got)
	}
	if err := h.counters.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, err := ts.store.Count(context.Background(), "quota:"+rec.ID, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)); err != nil || n != 3 {
		t.Errorf("the store counted %d (%v), want 3", n, err)
	}
	clk.Advance(time.Hour)
	if s := serve(h, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("refused on the next day: %d %s", s.rec.Code, s.rec.Body)
	}
}

// TestServeHTTPUses: a key with uses is refused with uses_exhausted once
// they are spent, with no Retry-After (they never come back); a request
// the rate limit refuses spends none; a refused use gives back the quota.
func TestServeHTTPUses(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{Limits: &keystore.Limits{Uses: 2, Quota: "100/month", Rate: "2/h"}})
	clk := clock.NewFake(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	h := ts.handler(t, &Handler{clock: clk})
	for i := 0; i < 2; i++ {
		if s := serve(h, newRequest("/", bearer(key))); s.next == nil {
			t.Fatalf("use %d refused: %d %s", i+1, s.rec.Code, s.rec.Body)
		}
	}
	// The rate limit refuses first: no use, no quota spent.
	checkProblem(t, serve(h, newRequest("/", bearer(key))), http.StatusTooManyRequests, CodeRateLimited)
	clk.Advance(time.Hour)
	s := serve(h, newRequest("/", bearer(key)))
	checkProblem(t, s, http.StatusTooManyRequests, CodeUsesExhausted)
	if got := s.rec.Header().Get("Retry-After"); got != "" {
		t.Errorf("Retry-After %q on uses that never come back", got)
	}
	// One list member per limit: the rate (allowed), the quota (taken,
	// then given back) and the uses (none left).
	want := []string{`"key";r=1;t=1800`, `"quota";r=97;t=39600`, `"uses";r=0`}
	if got := s.rec.Header().Values("RateLimit"); !slices.Equal(got, want) {
		t.Errorf("RateLimit %q, want %q", got, want)
	}
	if err := h.counters.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, _ := ts.store.Count(ctx, "uses:"+rec.ID, time.Unix(0, 0)); n != 2 {
		t.Errorf("uses counted: %d, want 2", n)
	}
	if n, _ := ts.store.Count(ctx, "quota:"+rec.ID, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)); n != 2 {
		t.Errorf("quota counted: %d, want 2 (refusals spend none)", n)
	}
}

// TestQuotaSurvivesNewCounters: counters made afresh (a restarted
// gateway) read the store's total before counting.
func TestQuotaSurvivesNewCounters(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{Limits: &keystore.Limits{Quota: "2/month"}})
	clk := clock.NewFake(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	h := ts.handler(t, &Handler{clock: clk})
	for i := 0; i < 2; i++ {
		serve(h, newRequest("/", bearer(key)))
	}
	if err := h.counters.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Another capacity setting: a pool of its own, as in a new process.
	h2 := ts.handler(t, &Handler{clock: clk})
	app := &App{RateLimitKeys: 12345}
	fresh, key2, err := app.acquireCounters(h2.poolKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseCounters(key2) })
	h2.checks[len(h2.checks)-1] = h2.quotaStep(fresh)
	checkProblem(t, serve(h2, newRequest("/", bearer(key))), http.StatusTooManyRequests, CodeQuotaExceeded)
}
