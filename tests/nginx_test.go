package tests

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAuthServerBehindNginx: Keygate as the auth service of nginx
// auth_request, with the configuration docs/auth-server.md shows (its
// nginx block, on the test's ports, in a minimal server of its own). A
// Caddy runs the auth site (api_key with auth_server and rate_limit 2/m);
// a real nginx asks it before proxying to the recording upstream. The
// upstream gets Keygate's identity in place of the client's and never the
// key; 401 reaches the client with its challenge, 429 through the named
// location with Retry-After, and so does 503 when Keygate's store is down;
// nothing refused reaches the upstream, and with Keygate down nginx
// refuses rather than passing requests through.
func TestAuthServerBehindNginx(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		nginx := nginxBin(t)
		up := newUpstream(t)
		k := sb.createKey("front", "--owner", "acme", "--scopes", "read,write")
		bare := sb.createKey("bare") // no owner, no scopes
		revoked := sb.createKey("gone", "--owner", "acme")
		sb.revoke(revoked.ID)
		g := newGateway(t, sb)
		g.globals = "\tkeygate {\n\t\tusage {\n\t\t\tflush_interval 200ms\n\t\t}\n\t}\n"
		// A second auth site whose store is down, for the 503 path.
		downPort := freePort(t)
		down := siteBlock(downPort, fmt.Sprintf("\tapi_key {\n\t\tdatabase postgres://postgres@127.0.0.1:%d/x\n\t\tpepper %s\n\t\tauth_server\n\t}",
			freePort(t), randomPepper()))
		g.start(g.site(fmt.Sprintf("\tapi_key {\n\t\t%s\n\t\tauth_server\n\t\trate_limit 2/m\n\t}", sb.storeOptions()))+down, downPort)

		// The documented locations, on the test's ports.
		doc := fencedBlocks(t, "../docs/auth-server.md", "nginx")
		if len(doc) != 1 || strings.Count(doc[0], "127.0.0.1:9000") != 1 || strings.Count(doc[0], "127.0.0.1:8081") != 1 {
			t.Fatalf("docs/auth-server.md should have one nginx block naming 127.0.0.1:9000 (Keygate) and 127.0.0.1:8081 (the upstream) once each:\n%s", strings.Join(doc, "\n---\n"))
		}
		locations := func(authPort int) string {
			return strings.NewReplacer(
				"127.0.0.1:9000", fmt.Sprintf("127.0.0.1:%d", authPort),
				"127.0.0.1:8081", up.hostPort(),
			).Replace(doc[0])
		}
		front := startNginx(t, nginx, locations(g.port))
		frontDown := startNginx(t, nginx, locations(downPort))

		// Admitted: the identity is Keygate's, whatever the client sent
		// under those names, and the key stays out of the upstream's
		// request.
		r := get(t, front+"/v1/orders?page=2", "Authorization", "Bearer "+k.Key,
			"X-Api-Key-Id", "forged", "X-Api-Key-Owner", "forged", "X-Api-Key-Scopes", "forged")
		wantUpstream(t, "a valid key", r)
		reqs := up.requests()
		got := reqs[len(reqs)-1]
		if got.Header.Get("X-Api-Key-Id") != k.ID || got.Header.Get("X-Api-Key-Owner") != "acme" || got.Header.Get("X-Api-Key-Scopes") != "read,write" {
			t.Errorf("the upstream got id %q owner %q scopes %q, want %s acme read,write",
				got.Header.Get("X-Api-Key-Id"), got.Header.Get("X-Api-Key-Owner"), got.Header.Get("X-Api-Key-Scopes"), k.ID)
		}
		if _, ok := got.Header["Authorization"]; ok {
			t.Errorf("the upstream got Authorization %q", got.Header.Get("Authorization"))
		}
		if s := got.String(); strings.Contains(s, secretOf(k.Key)) || strings.Contains(s, "forged") {
			t.Errorf("the upstream got the key or a forged identity:\n%s", s)
		}
		if got.URL != "/v1/orders?page=2" || got.Method != http.MethodGet {
			t.Errorf("the upstream got %s %s, want the client's GET /v1/orders?page=2", got.Method, got.URL)
		}

		// A key without owner or scopes: Keygate answers them empty, and
		// nginx sends no header at all rather than the client's.
		req, err := http.NewRequest(http.MethodPost, front+"/v1/orders", strings.NewReader(`{"item":1}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+bare.Key)
		req.Header.Set("X-Api-Key-Owner", "forged")
		req.Header.Set("X-Api-Key-Scopes", "forged")
		wantUpstream(t, "a valid key without owner or scopes, POST with a body", do(t, req))
		reqs = up.requests()
		got = reqs[len(reqs)-1]
		if got.Header.Get("X-Api-Key-Id") != bare.ID || got.Method != http.MethodPost {
			t.Errorf("the upstream got %s with id %q, want POST with %s", got.Method, got.Header.Get("X-Api-Key-Id"), bare.ID)
		}
		for _, name := range []string{"X-Api-Key-Owner", "X-Api-Key-Scopes", "Authorization"} {
			if v, ok := got.Header[name]; ok {
				t.Errorf("the upstream got %s %q for a key without owner or scopes", name, v)
			}
		}

		// Refusals: nginx passes 401 and its challenge on (not the
		// problem body), and the upstream is not called.
		n := len(up.requests())
		r = get(t, front+"/v1/orders")
		wantStatus(t, "no key", r, http.StatusUnauthorized)
		if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="api"` {
			t.Errorf("no key: WWW-Authenticate %q", got)
		}
		if ct := r.header.Get("Content-Type"); ct == "application/problem+json" {
			t.Errorf("no key: nginx passed Keygate's problem body on; docs/auth-server.md says it does not:\n%s", r.body)
		}
		r = bearer(t, front+"/v1/orders", revoked.Key)
		wantStatus(t, "a revoked key", r, http.StatusUnauthorized)
		if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
			t.Errorf("revoked key: WWW-Authenticate %q", got)
		}

		// One request so far with k: the third is over 2/m. nginx would
		// make Keygate's 429 a 500; the named location gives it back its
		// status and Retry-After.
		wantUpstream(t, "a valid key, second request", bearer(t, front+"/v1/orders", k.Key))
		n++
		r = bearer(t, front+"/v1/orders", k.Key)
		wantStatus(t, "past the rate limit", r, http.StatusTooManyRequests)
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
			t.Errorf("rate limited: Retry-After %q, want 1 to 60 seconds", r.header.Get("Retry-After"))
		}
		if len(up.requests()) != n {
			t.Error("a refused request reached the upstream")
		}

		// Usage: one auth request per client request, two 200s and a 429.
		pollUntil(10*time.Second, 100*time.Millisecond, func() bool {
			_, n, _, _ := storedUsage(t, sb, k.ID)
			return n >= 3
		})
		classes, requests, _, _ := storedUsage(t, sb, k.ID)
		if requests != 3 || classes != [5]int64{0, 2, 0, 1, 0} {
			t.Errorf("usage: %d requests by class %v, want 3: 2 2xx and 1 4xx", requests, classes)
		}

		// Keygate's store down: its 503 reaches the client through the
		// named location, with Retry-After.
		r = bearer(t, frontDown+"/v1/orders", unknownKey(t))
		wantStatus(t, "the store down", r, http.StatusServiceUnavailable)
		if got := r.header.Get("Retry-After"); got != "5" {
			t.Errorf("the store down: Retry-After %q, want Keygate's default 5", got)
		}

		// Keygate down: nginx cannot ask, and refuses.
		g.stop()
		r = bearer(t, front+"/v1/orders", bare.Key)
		wantStatus(t, "Keygate down", r, http.StatusInternalServerError)
		if len(up.requests()) != n {
			t.Error("with Keygate down a request reached the upstream")
		}
	})
}

// nginxBin returns the nginx binary. Without one the test is skipped,
// unless CI=true, where it fails: CI must not go green by skipping it.
func nginxBin(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil { // not on PATH for a non-root user
			return "/usr/sbin/nginx"
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("nginx is required under CI=true: %v", err)
		}
		t.Skipf("nginx not installed (apt-get install nginx-light): %v", err)
	}
	return path
}

// startNginx runs nginx with server as the body of a server block on a
// free loopback port, everything it writes inside a temp dir, until the
// test ends; it returns the server's URL. nginx runs as a single process
// (master_process off): no worker that would drop root to nobody and then
// not reach the temp dir, and Pdeathsig takes it down with the test.
func startNginx(t *testing.T, bin, server string) string {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	cfg := fmt.Sprintf(`master_process off;
pid %s;
lock_file %s;
error_log %s notice;
events {
    worker_connections 64;
}
http {
    access_log %s;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;
    server {
        listen 127.0.0.1:%d;
%s
    }
}
`, p("nginx.pid"), p("nginx.lock"), p("error.log"), p("access.log"),
		p("client_body"), p("proxy"), p("fastcgi"), p("uwsgi"), p("scgi"), port, indent(server, "        "))
	if err := os.WriteFile(p("nginx.conf"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := func() string {
		var b strings.Builder
		for _, name := range []string{"nginx.out", "error.log"} {
			data, _ := os.ReadFile(p(name))
			fmt.Fprintf(&b, "--- %s:\n%s", name, data)
		}
		return b.String()
	}
	out, err := os.Create(p("nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, "-p", dir, "-c", p("nginx.conf"), "-e", p("error.log"), "-g", "daemon off;")
	cmd.SysProcAttr = childProcAttr()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGQUIT) // graceful shutdown
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			<-exited
			t.Errorf("nginx did not stop within %v of SIGQUIT and was killed; logs:\n%s", stopTimeout, logs())
		}
	})

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, "nginx", addr, time.Now().Add(startTimeout), exited, func() error { return waitErr }, func() string {
		return "config:\n" + cfg + "\nlogs:\n" + logs()
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of nginx on %s:\n%s", addr, logs())
		}
	})
	return "http://" + addr
}

// indent prefixes every non-empty line of s.
func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}
