package tests

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestFailedAuthDelayThroughCaddy: through a real Caddy and real clients,
// the 429 to a client out of its budget of failed checks comes after
// failed_auth_limit's delay, while the same client's cached valid key is
// answered at once during the hold, and the held answers are counted.
func TestFailedAuthDelayThroughCaddy(t *testing.T) {
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	const delay = 3 * time.Second
	g.start(apiKeySite(g, up, "failed_auth_limit 1/h burst 2 delay 3s"))
	waitForLog(t, g, watchingLog, 1, startTimeout)
	valid := createSettled(t, sb, g, "customer")
	if code, err := status(httpClient, g.url+"/", valid.Key); err != nil || code != http.StatusOK {
		t.Fatalf("valid key: %d %v", code, err)
	}
	for i := range 2 {
		if code, err := status(httpClient, g.url+"/", unknownKey(t)); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("unknown key %d within the budget: %d %v", i+1, code, err)
		}
	}
	held := metric(t, g, `caddy_api_key_over_budget_answers_total{result="held"}`)

	const n = 4
	type answer struct {
		code int
		err  error
		took time.Duration
		at   time.Time
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := status(httpClient, g.url+"/", unknownKey(t))
			answers[i] = answer{code, err, time.Since(start), time.Now()}
		}()
	}
	// While those are held, the same address's cached key is served.
	time.Sleep(500 * time.Millisecond)
	code, err := status(httpClient, g.url+"/", valid.Key)
	validAt := time.Now()
	wg.Wait()
	if err != nil || code != http.StatusOK {
		t.Errorf("cached valid key during the hold: %d %v", code, err)
	}
	for i, a := range answers {
		if a.err != nil || a.code != http.StatusTooManyRequests {
			t.Errorf("request %d out of budget: %d %v, want 429", i+1, a.code, a.err)
			continue
		}
		if a.took < delay {
			t.Errorf("request %d out of budget answered after %s, want at least %s", i+1, a.took, delay)
		}
		if !a.at.After(validAt) {
			t.Errorf("request %d out of budget was answered before the valid key sent after it", i+1)
		}
	}
	if got := metric(t, g, `caddy_api_key_over_budget_answers_total{result="held"}`) - held; got != n {
		t.Errorf("held answers counted: %v, want %d", got, n)
	}
}
