package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/keystore"
)

// Two api_key handlers on one request (the second with a key source of
// its own): the placeholders name the key the last one admitted, as the
// identity headers do, not the first handler's.
func TestPlaceholdersOfTheLastHandler(t *testing.T) {
	ts := newTestStore(t)
	first, _ := ts.issue(t, keystore.NewKeyParams{Owner: "first"})
	second, rec := ts.issue(t, keystore.NewKeyParams{Owner: "second"})
	h1 := ts.handler(t, &Handler{})
	h2 := ts.handler(t, &Handler{Sources: []KeySource{{From: FromHeader, Name: "X-Second-Key"}}})

	repl := caddy.NewReplacer()
	r := newRequest("/", bearer(first), "X-Second-Key: "+second)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	var up *http.Request
	inner := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { up = r; return nil })
	outer := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return h2.ServeHTTP(w, r, inner) })
	if err := h1.ServeHTTP(httptest.NewRecorder(), r, outer); err != nil || up == nil {
		t.Fatalf("refused: %v", err)
	}
	for name, want := range map[string]string{"api_key.id": rec.ID, "http.auth.user.id": rec.ID, "api_key.owner": "second"} {
		if got, _ := repl.GetString(name); got != want {
			t.Errorf("{%s} = %q, want %q", name, got, want)
		}
	}
	if got := up.Header.Get("X-Api-Key-Owner"); got != "second" {
		t.Errorf("X-Api-Key-Owner %q, want second", got)
	}
	if got, _ := repl.GetString(keyRequestPlaceholder); got != "" {
		t.Errorf("the internal placeholder reads %q, want empty", got)
	}
}

// Header values set from a request's keyRequest share its storage: a
// later handler that appends to one must not write into the next.
func TestIdentityHeaderValuesAreSeparate(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{Owner: "acme"})
	h := ts.handler(t, &Handler{})
	s := serve(h, newRequest("/", bearer(key)))
	if s.next == nil {
		t.Fatalf("refused: %d %s", s.rec.Code, s.rec.Body)
	}
	up := s.next.Header
	up.Add("X-Api-Key-Id", "appended")
	up["X-Api-Key-Id"][0] = "edited"
	if got := up["X-Api-Key-Owner"]; len(got) != 1 || got[0] != "acme" {
		t.Errorf("X-Api-Key-Owner = %q after X-Api-Key-Id was appended to, want [acme]", got)
	}
	if got, _ := s.placeholder("api_key.id"); got != rec.ID {
		t.Errorf("{api_key.id} = %q after the header was edited, want %q", got, rec.ID)
	}
}
