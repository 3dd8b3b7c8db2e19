package caddymodule

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestAuthServerAdmits: an admitted request is answered 200 with an empty
// body and the identity in response headers; the next handler is not
// called, and nothing in the answer holds the key.
func TestAuthServerAdmits(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{Owner: "acme", Scopes: []string{"write", "read"}})
	bare, bareRec := ts.issue(t, keystore.NewKeyParams{})
	tests := []struct {
		name string
		h    *Handler
		key  string
		want http.Header // identity headers of the answer
	}{
		{"defaults", &Handler{AuthServer: true}, key, http.Header{
			"X-Api-Key-Id": {rec.ID}, "X-Api-Key-Owner": {"acme"}, "X-Api-Key-Scopes": {"read,write"}}},
		// Owner and scopes are sent empty, so that a proxy copying them
		// replaces what the client sent.
		{"no owner or scopes", &Handler{AuthServer: true}, bare, http.Header{
			"X-Api-Key-Id": {bareRec.ID}, "X-Api-Key-Owner": {""}, "X-Api-Key-Scopes": {""}}},
		{"renamed", &Handler{AuthServer: true, IDHeader: "x-consumer", OwnerHeader: "X-Team"}, key, http.Header{
			"X-Consumer": {rec.ID}, "X-Team": {"acme"}, "X-Api-Key-Scopes": {"read,write"}}},
		{"off", &Handler{AuthServer: true, IDHeader: "off", OwnerHeader: "-"}, key, http.Header{
			"X-Api-Key-Scopes": {"read,write"}}},
		{"route scopes", &Handler{AuthServer: true, Scopes: []string{"read"}}, key, http.Header{
			"X-Api-Key-Id": {rec.ID}, "X-Api-Key-Owner": {"acme"}, "X-Api-Key-Scopes": {"read,write"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := ts.handler(t, tt.h)
			// forward_auth's auth request: a GET with the original
			// request's headers, forged identity headers included.
			s := serve(h, newRequest("/verify", bearer(tt.key), "X-Forwarded-Method: POST", "X-Forwarded-Uri: /v1/orders",
				"X-Api-Key-Id: forged", "X-Api-Key-Owner: forged", "X-Api-Key-Scopes: admin"))
			if s.err != nil || s.rec.Code != http.StatusOK {
				t.Fatalf("answer %d %s %v, want 200", s.rec.Code, s.rec.Body, s.err)
			}
			if s.next != nil {
				t.Error("next was called")
			}
			if s.rec.Body.Len() != 0 {
				t.Errorf("body %q, want none", s.rec.Body)
			}
			hdr := s.rec.Header()
			for name, vals := range hdr {
				for _, v := range vals {
					if strings.Contains(v, tt.key) || strings.Contains(v, "forged") {
						t.Errorf("answer header %s: %q", name, v)
					}
				}
			}
			got := http.Header{}
			for _, name := range []string{"X-Api-Key-Id", "X-Api-Key-Owner", "X-Api-Key-Scopes", "X-Consumer", "X-Team"} {
				if v, ok := hdr[name]; ok {
					got[name] = v
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("identity headers %v, want %v", got, tt.want)
			}
			if hdr.Get("Cache-Control") != "no-store" || hdr.Get("Content-Length") != "0" {
				t.Errorf("Cache-Control %q, Content-Length %q", hdr.Get("Cache-Control"), hdr.Get("Content-Length"))
			}
			if id, _ := s.placeholder("api_key.id"); id == "" {
				t.Error("{api_key.id} not set: the access log would not name the key")
			}
		})
	}
}

// TestAuthServerRefusals: refusals are the gateway's, problem+json with
// their challenges, and carry no identity.
func TestAuthServerRefusals(t *testing.T) {
	ts := newTestStore(t)
	valid, _ := ts.issue(t, keystore.NewKeyParams{})
	revoked, rec := ts.issue(t, keystore.NewKeyParams{})
	ts.revoke(t, rec.ID)
	h := ts.handler(t, &Handler{AuthServer: true, Scopes: []string{"admin"}})
	tests := []struct {
		name    string
		r       *http.Request
		status  int
		code    string
		wwwAuth string
	}{
		{"missing", newRequest("/verify"), 401, CodeMissingKey, `Bearer realm="api"`},
		{"malformed", newRequest("/verify", bearer("kg_nope")), 401, CodeInvalidKey, `Bearer realm="api", error="invalid_token"`},
		{"unknown", newRequest("/verify", bearer(ts.unknownKey(t))), 401, CodeInvalidKey, `Bearer realm="api", error="invalid_token"`},
		{"revoked", newRequest("/verify", bearer(revoked)), 401, CodeInvalidKey, `Bearer realm="api", error="invalid_token"`},
		{"scope", newRequest("/verify", bearer(valid)), 403, CodeInsufficientScope, `Bearer realm="api", error="insufficient_scope", scope="admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(h, tt.r)
			checkProblem(t, s, tt.status, tt.code)
			if got := s.rec.Header().Get("WWW-Authenticate"); got != tt.wwwAuth {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.wwwAuth)
			}
			for _, name := range []string{"X-Api-Key-Id", "X-Api-Key-Owner", "X-Api-Key-Scopes"} {
				if v, ok := s.rec.Header()[name]; ok {
					t.Errorf("refusal has %s: %q", name, v)
				}
			}
		})
	}
}

// TestAuthServerLimitsAndUsage: each auth request counts once against the
// rate limit, exactly as a gateway request does, and usage records the
// answers Keygate gave: 200 for the admitted ones, 429 for the refused.
func TestAuthServerLimitsAndUsage(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{})
	h := ts.handler(t, &Handler{AuthServer: true, RateLimit: &RateLimit{Rate: "2/m"}})
	if h.usage == nil {
		t.Fatal("usage metering is off")
	}
	for i, want := range []int{200, 200, 429} {
		s := serve(h, newRequest("/verify", bearer(key)))
		if s.rec.Code != want || s.next != nil {
			t.Fatalf("request %d: %d (next called: %v), want %d", i+1, s.rec.Code, s.next != nil, want)
		}
		if want == 429 {
			checkProblem(t, s, 429, CodeRateLimited)
			if s.rec.Header().Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		} else if got, want := s.rec.Header().Get("Ratelimit"), `"key";r=`+[]string{"1", "0"}[i]+";"; !strings.HasPrefix(got, want) {
			t.Errorf("request %d: RateLimit %q, want %s…", i+1, got, want)
		}
	}
	if err := h.usage.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	buckets, err := ts.store.Usage(context.Background(), keystore.UsageQuery{KeyID: rec.ID, By: keystore.ByDay})
	if err != nil {
		t.Fatal(err)
	}
	var total keystore.UsageCounts
	for _, b := range buckets {
		total.Add(&b.UsageCounts)
	}
	if total.Status[keystore.Class2xx] != 2 || total.Status[keystore.Class4xx] != 1 || total.Requests() != 3 {
		t.Errorf("usage %+v, want 2 answers 2xx and 1 4xx", total.Status)
	}
	if total.BytesOut == 0 {
		t.Error("the 429's body was not counted")
	}
}

// TestAuthServerCookieMethod: behind forward_auth the auth request is a
// GET; the cookie check judges the method the client used, which the
// proxy sends in X-Forwarded-Method.
func TestAuthServerCookieMethod(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	cookie := []KeySource{{From: FromCookie, Name: "api_key"}}
	cross := []string{"Cookie: api_key=" + key, "Sec-Fetch-Site: cross-site", "Origin: https://evil.example"}
	tests := []struct {
		name   string
		h      *Handler
		header []string
		want   int
	}{
		{"auth_server cross-site POST", &Handler{AuthServer: true, Sources: cookie}, append([]string{"X-Forwarded-Method: POST"}, cross...), 403},
		{"auth_server cross-site GET", &Handler{AuthServer: true, Sources: cookie}, append([]string{"X-Forwarded-Method: GET"}, cross...), 200},
		{"auth_server without the header", &Handler{AuthServer: true, Sources: cookie}, cross, 200},
		// Without auth_server the header means nothing: the gateway sees
		// the method itself.
		{"gateway ignores the header", &Handler{Sources: cookie}, append([]string{"X-Forwarded-Method: POST"}, cross...), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := ts.handler(t, tt.h)
			s := serve(h, newRequest("/verify", tt.header...))
			if s.rec.Code != tt.want {
				t.Errorf("status %d, want %d: %s", s.rec.Code, tt.want, s.rec.Body)
			}
		})
	}
}
