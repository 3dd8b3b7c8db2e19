package caddymodule

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
)

// zapClock lets a fake clock drive a zap logger, whose sampler counts
// lines per second of entry time.
type zapClock struct{ *clock.Fake }

func (zapClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

func summaries(logs *observer.ObservedLogs) []map[string]any {
	var out []map[string]any
	for _, e := range logs.FilterMessage("api key refusals").All() {
		out = append(out, e.ContextMap())
	}
	return out
}

// TestSecurityLogFloodIsBounded: a flood of refusals writes at most
// refusalLinesPerSecond lines a second; the summary counts every refusal,
// those not logged one by one included.
func TestSecurityLogFloodIsBounded(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	core, logs := observer.New(zapcore.InfoLevel)
	s := newSecurityLog(zap.New(core, zap.WithClock(zapClock{clk})))
	defer s.close()
	r := withClientIP(newRequest("/"), "203.0.113.9")

	const flood = 5000
	for i := 0; i < flood; i++ {
		s.refused(r, CodeInvalidKey, "")
	}
	s.refused(r, CodeMissingKey, "")
	if n := logs.FilterMessage("api key refused").Len(); n != refusalLinesPerSecond {
		t.Fatalf("%d refusal lines in one second of a flood, want %d", n, refusalLinesPerSecond)
	}
	clk.Advance(time.Second)
	s.refused(r, CodeExpiredKey, "AAAAAAAAAAAA")
	if n := logs.FilterMessage("api key refused").Len(); n != refusalLinesPerSecond+1 {
		t.Fatalf("the next second's first refusal was not logged (%d lines)", n)
	}
	s.flush()
	sums := summaries(logs)
	if len(sums) != 1 {
		t.Fatalf("%d summaries, want 1", len(sums))
	}
	got := sums[0]
	want := map[string]any{CodeInvalidKey: uint64(flood), CodeMissingKey: uint64(1), CodeExpiredKey: uint64(1),
		"total": uint64(flood + 2), "not_logged_one_by_one": uint64(flood + 1 - refusalLinesPerSecond)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("summary %s = %v, want %v (summary %v)", k, got[k], v, got)
		}
	}
	// Counted once: the next summary has nothing to say.
	s.flush()
	if n := len(summaries(logs)); n != 1 {
		t.Errorf("%d summaries after a quiet period, want still 1", n)
	}
}

// TestSecurityLogLines: each refusal line names the reason, the client IP
// and, once the key parsed, its id; never the key.
func TestSecurityLogLines(t *testing.T) {
	ts := newTestStore(t)
	valid, rec := ts.issue(t, keystore.NewKeyParams{})
	unknown := ts.unknownKey(t)
	h := ts.handler(t, &Handler{Scopes: nil})
	logs := observe(h)

	serve(h, withClientIP(newRequest("/"), "192.0.2.1"))
	last := "x"
	if strings.HasSuffix(valid, last) {
		last = "y"
	}
	serve(h, withClientIP(newRequest("/", bearer(valid[:len(valid)-1]+last)), "192.0.2.2"))
	serve(h, withClientIP(newRequest("/", bearer(unknown)), "2001:db8::7"))
	ts.revoke(t, rec.ID)
	waitRefused(t, h, valid)
	lines := logs.FilterMessage("api key refused").All()
	if len(lines) < 4 {
		t.Fatalf("%d refusal lines, want at least 4", len(lines))
	}
	unknownID, err := h.format.Parse(unknown)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"reason": CodeMissingKey, "client_ip": "192.0.2.1"},
		{"reason": CodeInvalidKey, "client_ip": "192.0.2.2"},
		{"reason": CodeInvalidKey, "client_ip": "2001:db8::7", "key_id": unknownID.ID},
		{"reason": CodeInvalidKey, "key_id": rec.ID},
	}
	for i, w := range want {
		got := lines[i].ContextMap()
		for k, v := range w {
			if got[k] != v {
				t.Errorf("line %d: %s = %v, want %v (line %v)", i, k, got[k], v, got)
			}
		}
		if _, ok := w["key_id"]; !ok && got["key_id"] != nil {
			t.Errorf("line %d names a key id for a key that did not parse: %v", i, got)
		}
		if lines[i].Level != zapcore.InfoLevel {
			t.Errorf("line %d at level %v, want info", i, lines[i].Level)
		}
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if v := f.String; v != "" && (strings.Contains(v, valid[len(valid)-20:]) || strings.Contains(v, unknown[len(unknown)-20:])) {
				t.Errorf("a log field holds a key's secret: %s %q", e.Message, v)
			}
		}
	}
	h.security.flush()
	sums := summaries(logs)
	if len(sums) != 1 || sums[0][CodeInvalidKey] != uint64(len(lines)-1) || sums[0][CodeMissingKey] != uint64(1) {
		t.Errorf("summary %v, want %d %s and 1 %s", sums, len(lines)-1, CodeInvalidKey, CodeMissingKey)
	}
}

// waitRefused serves key until the handler refuses it (the revocation
// reached the cache).
func waitRefused(t *testing.T, h *Handler, key string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := serve(h, newRequest("/", bearer(key))); s.rec.Code == http.StatusUnauthorized {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the revoked key was still accepted after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
