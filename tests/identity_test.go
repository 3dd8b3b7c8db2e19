package tests

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange writes a request byte for byte, the way an attacker's own
// client would, and reads the answer.
func rawExchange(t *testing.T, g *gateway, raw string) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", g.port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, strings.ReplaceAll(raw, "\n", "\r\n")); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// lastRequest is the one request the upstream must have received.
func lastRequest(t *testing.T, up *upstream, n int) recordedRequest {
	t.Helper()
	reqs := up.requests()
	if len(reqs) != n {
		t.Fatalf("upstream got %d requests, want %d", len(reqs), n)
	}
	return reqs[n-1]
}

// TestHopByHopCannotDropIdentity: reverse_proxy deletes the headers a
// client names in Connection. Naming the identity headers must not strip
// them from the request the upstream gets.
func TestHopByHopCannotDropIdentity(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, ""))
	k := sb.createKey("owned", "--owner", "acme")
	res := rawExchange(t, g, "GET /orders HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer "+k.Key+
		"\nConnection: x-api-key-id, X-Api-Key-Owner, close\nX-Trace: 1\n\n")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	r := lastRequest(t, up, 1)
	if got := r.Header.Get("X-Api-Key-Id"); got != k.ID {
		t.Errorf("upstream X-Api-Key-Id %q, want %q", got, k.ID)
	}
	if got := r.Header.Get("X-Api-Key-Owner"); got != "acme" {
		t.Errorf("upstream X-Api-Key-Owner %q, want acme", got)
	}
}

// TestTrailersCannotCarryIdentity: a chunked request whose trailers name
// identity headers or carry a key reaches the upstream without them;
// harmless trailers still pass, so the test would see smuggled ones.
func TestTrailersCannotCarryIdentity(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, "from bearer\n\t\tfrom header X-API-Key"))
	k := sb.createKey("client")
	for i, declare := range []string{
		"X-Api-Key-Id, X-Api-Key-Owner, Authorization, X-Api-Key, X-Checksum",
		"X-Checksum", // the others undeclared: net/http merges them in anyway
	} {
		res := rawExchange(t, g, "POST /upload HTTP/1.1\nHost: 127.0.0.1\nAuthorization: Bearer "+k.Key+
			"\nTransfer-Encoding: chunked\nTrailer: "+declare+"\nConnection: close\n\n"+
			"5\nhello\n0\nX-Api-Key-Id: admin\nX-Api-Key-Owner: admin\nAuthorization: Bearer "+k.Key+
			"\nX-Api-Key: "+k.Key+"\nX-Checksum: abc\n\n")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("declared %q: status %d", declare, res.StatusCode)
		}
		r := lastRequest(t, up, i+1)
		if got := r.Trailer.Get("X-Checksum"); got != "abc" {
			t.Fatalf("declared %q: the harmless trailer did not arrive (%q): trailers are not forwarded, the test proves nothing", declare, r.Trailer)
		}
		for _, name := range []string{"X-Api-Key-Id", "X-Api-Key-Owner", "Authorization", "X-Api-Key"} {
			if v, ok := r.Trailer[name]; ok {
				t.Errorf("declared %q: trailer %s = %q reached the upstream", declare, name, v)
			}
		}
		if got := r.Header.Get("X-Api-Key-Id"); got != k.ID {
			t.Errorf("declared %q: upstream X-Api-Key-Id %q, want %q", declare, got, k.ID)
		}
	}
}

// TestIdentityHeadersRemovedWhenRenamedOrOff: an upstream may trust the
// default identity headers whatever the gateway sends; a client-sent
// X-Api-Key-Id never passes, even with id_header renamed or off.
func TestIdentityHeadersRemovedWhenRenamedOrOff(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, "id_header off\n\t\towner_header X-Who"))
	k := sb.createKey("client", "--owner", "acme")
	wantUpstream(t, "forged identity", get(t, g.url+"/", "Authorization", "Bearer "+k.Key,
		"X-Api-Key-Id", "admin", "X-Api-Key-Owner", "admin", "X-Who", "admin"))
	r := lastRequest(t, up, 1)
	for _, name := range []string{"X-Api-Key-Id", "X-Api-Key-Owner"} {
		if v, ok := r.Header[name]; ok {
			t.Errorf("client-sent %s = %q reached the upstream", name, v)
		}
	}
	if got := r.Header.Values("X-Who"); len(got) != 1 || got[0] != "acme" {
		t.Errorf("upstream X-Who %q, want [acme]", got)
	}
}

// TestKeyNotForwardedFromOtherSources: with header and query sources, a
// request that also carries a valid key as a bearer token must not pass
// that key on.
func TestKeyNotForwardedFromOtherSources(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, "from header X-API-Key\n\t\tfrom query api_key"))
	a, b := sb.createKey("a"), sb.createKey("b")
	wantUpstream(t, "query key with a bearer key", get(t, g.url+"/?api_key="+a.Key, "Authorization", "Bearer "+b.Key))
	wantUpstream(t, "header key with a bearer key", get(t, g.url+"/", "X-API-Key", a.Key, "Authorization", "Bearer "+b.Key))
	wantUpstream(t, "header key with a Basic login", get(t, g.url+"/", "X-API-Key", a.Key, "Authorization", "Basic dXNlcjpwYXNz"))
	reqs := up.requests()
	for i, r := range reqs[:2] {
		if strings.Contains(r.String(), b.Key) || strings.Contains(r.String(), secretOf(a.Key)) {
			t.Errorf("request %d: a key reached the upstream:\n%s", i, r)
		}
	}
	if got := reqs[2].Header.Get("Authorization"); got != "Basic dXNlcjpwYXNz" {
		t.Errorf("a Basic login that is no key was not forwarded: %q", got)
	}
}

// TestCookieKeysRefuseCrossSite: a browser sends a cookie by itself, so a
// state-changing request whose key came from a cookie must come from the
// site itself or an allowed origin.
func TestCookieKeysRefuseCrossSite(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	allowedPort := freePort(t)
	allowed := siteBlock(allowedPort, fmt.Sprintf("\tapi_key {\n\t\tfrom cookie api_key\n\t\tallowed_origins https://app.example.com\n\t}\n\treverse_proxy %s", up.hostPort()))
	g.start(apiKeySite(g, up, "from cookie api_key")+allowed, allowedPort)
	k := sb.createKey("browser")
	send := func(base, method string, header ...string) response {
		req := newRequest(t, base+"/orders", append([]string{"Cookie", "api_key=" + k.Key}, header...)...)
		req.Method = method
		return do(t, req)
	}
	r := send(g.url, http.MethodPost, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	wantStatus(t, "cross-site POST", r, http.StatusForbidden)
	if p := r.problem(t); p.Code != "cross_origin_request" {
		t.Errorf("cross-site POST: code %q", p.Code)
	}
	wantStatus(t, "DELETE with a foreign Origin", send(g.url, http.MethodDelete, "Origin", "https://evil.example"), http.StatusForbidden)
	wantUpstream(t, "cross-site GET", send(g.url, http.MethodGet, "Sec-Fetch-Site", "cross-site"))
	wantUpstream(t, "same-origin POST", send(g.url, http.MethodPost, "Sec-Fetch-Site", "same-origin"))
	wantUpstream(t, "POST without browser headers", send(g.url, http.MethodPost))
	allowedURL := fmt.Sprintf("http://127.0.0.1:%d", allowedPort)
	wantUpstream(t, "POST from an allowed origin", send(allowedURL, http.MethodPost, "Sec-Fetch-Site", "cross-site", "Origin", "https://app.example.com"))
	wantStatus(t, "POST from another origin", send(allowedURL, http.MethodPost, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"), http.StatusForbidden)
}

// TestOpenRoutesCannotForgeIdentity: the README's way of leaving a route
// open also removes client-sent identity headers there, in every
// spelling of the path that skips the key check.
func TestOpenRoutesCannotForgeIdentity(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(g.site(fmt.Sprintf(`	@open path /healthz
	@protected not path /healthz
	request_header @open -X-Api-Key-Id
	request_header @open -X-Api-Key-Owner
	api_key @protected
	reverse_proxy %s`, up.hostPort())))
	k := sb.createKey("client", "--owner", "acme")
	paths := []string{"/healthz", "/HEALTHZ", "//healthz", "/./healthz", "/%68ealthz"}
	for _, p := range paths {
		wantUpstream(t, "open route "+p, get(t, g.url+p, "X-Api-Key-Id", "admin", "X-Api-Key-Owner", "admin"))
	}
	wantUpstream(t, "protected route", get(t, g.url+"/orders", "Authorization", "Bearer "+k.Key, "X-Api-Key-Id", "admin"))
	reqs := up.requests()
	if len(reqs) != len(paths)+1 {
		t.Fatalf("upstream got %d requests, want %d", len(reqs), len(paths)+1)
	}
	for i, r := range reqs[:len(paths)] {
		if strings.Contains(r.String(), "admin") {
			t.Errorf("%s: a forged identity header reached the upstream:\n%s", paths[i], r)
		}
	}
	if got := reqs[len(paths)].Header.Get("X-Api-Key-Id"); got != k.ID {
		t.Errorf("protected route: X-Api-Key-Id %q, want %q (request_header must not remove the trusted one)", got, k.ID)
	}
}

// TestMisplacedKeysAreTold: a key sent in Authorization without the
// Bearer scheme gets invalid_key with a detail saying how to send it (not
// "this API requires a key"), and the answer never repeats the key.
func TestMisplacedKeysAreTold(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, "from bearer\n\t\tfrom query api_key"))
	k := sb.createKey("client")
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(k.Key+":")) // curl -u "$KEY:"
	for _, auth := range []string{k.Key, "Token " + k.Key, "Bearer\t" + k.Key, "ApiKey key=" + k.Key, basic} {
		r := get(t, g.url+"/", "Authorization", auth)
		wantStatus(t, "Authorization: "+auth[:10]+"…", r, http.StatusUnauthorized)
		p := r.problem(t)
		if p.Code != "invalid_key" || !strings.Contains(p.Detail, "Authorization: Bearer <key>") {
			t.Errorf("Authorization %q…: %+v", auth[:10], p)
		}
		if strings.Contains(string(r.body)+fmt.Sprint(r.header), secretOf(k.Key)) {
			t.Errorf("the answer repeats the key")
		}
	}
	p := get(t, g.url+"/", "Authorization", "Basic dXNlcjpwYXNz").problem(t)
	if p.Code != "missing_key" {
		t.Errorf("a Basic login without a key: %+v, want missing_key", p)
	}
	// A query key is trimmed like a header value.
	wantUpstream(t, "query key with a trailing newline", get(t, g.url+"/?api_key="+k.Key+"%0A"))
}
