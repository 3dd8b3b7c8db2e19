package tests

import (
	"fmt"
	"net/http"
	"testing"
)

// TestHandleErrorsExample runs the handle_errors example of docs/errors.md:
// with the option on, the site's handle_errors routes render the refusal,
// and the challenge headers are still there.
func TestHandleErrorsExample(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(g.site(fmt.Sprintf(`	api_key {
		handle_errors
	}
	reverse_proxy %s

	handle_errors {
		@auth expression `+"`{http.error.status_code} in [401, 403]`"+`
		handle @auth {
			header Content-Type application/json
			respond `+"`"+`{"error": "{api_key.error}"}`+"`"+` {http.error.status_code}
		}
		respond "{http.error.status_code} {http.error.status_text}" {http.error.status_code}
	}`, up.hostPort())))
	k := sb.createKey("ok")

	cases := []struct {
		name, key, body, challenge string
		status                     int
	}{
		{"missing", "", `{"error": "missing_key"}`, `Bearer realm="api"`, http.StatusUnauthorized},
		{"unknown", unknownKey(t), `{"error": "invalid_key"}`, `Bearer realm="api", error="invalid_token"`, http.StatusUnauthorized},
	}
	for _, c := range cases {
		var r response
		if c.key == "" {
			r = get(t, g.url+"/")
		} else {
			r = bearer(t, g.url+"/", c.key)
		}
		if r.status != c.status || string(r.body) != c.body || r.header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("%s: %d %q, challenge %q; want %d %q, %q", c.name, r.status, r.body,
				r.header.Get("WWW-Authenticate"), c.status, c.body, c.challenge)
		}
	}
	wantUpstream(t, "valid key", bearer(t, g.url+"/", k.Key))
}
