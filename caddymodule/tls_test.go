package caddymodule

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/keystore"
)

// TestRequireTLS: with require_tls, a working key over plain HTTP from a
// peer outside the plain networks (default loopback) is refused with 403
// tls_required and logged once as exposed, with its id and not the key;
// TLS, a listed network, and a trusted proxy's X-Forwarded-Proto: https
// pass; a client's own X-Forwarded-Proto does not.
func TestRequireTLS(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{Owner: "acme"})
	h := ts.handler(t, &Handler{RequireTLS: &RequireTLS{}})
	core, logs := observer.New(zapcore.DebugLevel)
	for _, c := range h.checks {
		if tc, ok := c.(tlsCheck); ok {
			tc.exposed.logger = zap.New(core)
		}
	}
	from := func(remote string, trusted bool, tlsOn bool, headers ...string) *served {
		r := newRequest("/", append([]string{bearer(key)}, headers...)...)
		r.RemoteAddr = remote
		if tlsOn {
			r.TLS = &tls.ConnectionState{}
		}
		vars := map[string]any{caddyhttp.TrustedProxyVarKey: trusted, caddyhttp.ClientIPVarKey: "203.0.113.7"}
		return serve(h, r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars)))
	}
	s := from("192.0.2.1:4000", false, false)
	checkProblem(t, s, http.StatusForbidden, CodeTLSRequired)
	if !strings.Contains(s.rec.Body.String(), "treated as exposed") {
		t.Errorf("the refusal does not say the key is exposed: %s", s.rec.Body)
	}
	checkProblem(t, from("192.0.2.1:4000", false, false, "X-Forwarded-Proto: https"), http.StatusForbidden, CodeTLSRequired)
	for _, ok := range []*served{
		from("192.0.2.1:4000", false, true),
		from("127.0.0.1:4000", false, false),
		from("[::1]:4000", false, false),
		from("[::ffff:127.0.0.1]:4000", false, false),
		from("10.1.2.3:4000", true, false, "X-Forwarded-Proto: https"),
	} {
		if ok.next == nil {
			t.Fatalf("refused: %d %s", ok.rec.Code, ok.rec.Body)
		}
	}
	lines := logs.FilterMessageSnippet("treat it as exposed").All()
	if len(lines) != 1 {
		t.Fatalf("exposure logged %d times, want once per key per %v", len(lines), exposureLogEvery)
	}
	f := lines[0].ContextMap()
	if f["key_id"] != rec.ID || f["owner"] != "acme" || f["client_ip"] != "203.0.113.7" {
		t.Errorf("exposure line fields %v", f)
	}
	for _, e := range logs.All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, key) {
				t.Fatal("a log line holds the key")
			}
		}
	}

	// A listed network replaces loopback.
	h2 := ts.handler(t, &Handler{RequireTLS: &RequireTLS{PlainNetworks: []string{"10.0.0.0/8"}}})
	r := newRequest("/", bearer(key))
	r.RemoteAddr = "127.0.0.1:4000"
	checkProblem(t, serve(h2, r), http.StatusForbidden, CodeTLSRequired)
	r = newRequest("/", bearer(key))
	r.RemoteAddr = "10.9.9.9:4000"
	if serve(h2, r).next == nil {
		t.Fatal("a listed network was refused")
	}
}
