package tests

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestFailedAuthDelayThroughCaddy: through a real Caddy and real clients,
// the 429 to a client out of its budget of failed checks comes after
// failed_auth_limit's delay, while the same client's cached valid key is
// answered at once during the hold, and the held answers are counted. A
// reload, and then the process's exit, end a hold at once: neither waits
// out a long delay.
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

	// A long delay from here on. The budget outlives the reload: the
	// client is still out of it.
	const long = 40 * time.Second
	config := func(d time.Duration) string {
		return apiKeySite(g, up, fmt.Sprintf("failed_auth_limit 1/h burst 2 delay %s", d))
	}
	if res := g.reload(config(long)); res.code != 0 {
		t.Fatalf("reload: %s", res)
	}
	heldAnswer := func() (done chan answer) {
		done = make(chan answer, 1)
		start := time.Now()
		go func() {
			code, err := status(httpClient, g.url+"/", unknownKey(t))
			done <- answer{code, err, time.Since(start), time.Now()}
		}()
		// Until the gateway holds it.
		for deadline := time.Now().Add(long / 4); ; time.Sleep(20 * time.Millisecond) {
			if metric(t, g, `caddy_api_key_over_budget_answers_total{result="held"}`) > held+n {
				held++
				return done
			}
			if time.Now().After(deadline) {
				t.Fatal("the answer was never held")
			}
		}
	}

	wait := heldAnswer()
	if res := g.reload(config(long + time.Second)); res.code != 0 {
		t.Fatalf("reload: %s", res)
	}
	if a := <-wait; a.err != nil || a.code != http.StatusTooManyRequests || a.took >= long/2 {
		t.Errorf("answer held across a reload: %d %v after %s, want 429 well before the delay of %s", a.code, a.err, a.took, long)
	}

	wait = heldAnswer()
	stopped := time.Now()
	g.stop()
	if took := time.Since(stopped); took >= long/2 {
		t.Errorf("Caddy took %s to exit with an answer held, want well under the delay of %s", took, long)
	}
	if a := <-wait; a.err != nil || a.code != http.StatusTooManyRequests {
		t.Errorf("answer held at exit: %d %v, want 429", a.code, a.err)
	}
}
