// Package tests holds Keygate's end-to-end tests. They build the real Caddy
// binary from ./cmd/caddy once, start it from Caddyfiles in front of a
// recording upstream, talk to it with real HTTP clients and manage keys
// with the real `caddy api-key` CLI, against the embedded SQLite store and
// PostgreSQL (a private database per test, see internal/pgtest).
//
// Every file is a _test.go file, so that nothing here is part of a build
// or of `go vet ./...` outside `go test`.
package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/testport"
	"github.com/keygate/keygate/keystore"
	_ "github.com/keygate/keygate/keystore/postgres"
	_ "github.com/keygate/keygate/keystore/sqlite"
)

// caddyBin is the binary TestMain builds.
var caddyBin string

func TestMain(m *testing.M) {
	flag.Parse()
	// The tests spend most of their time waiting for child processes
	// (a race-enabled Caddy needs a second just to start), so run more of
	// them at once than there are CPUs, unless -parallel says otherwise.
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		flag.Set("test.parallel", strconv.Itoa(max(4, runtime.GOMAXPROCS(0))))
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: creating temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	caddyBin = filepath.Join(dir, "caddy")
	args := []string{"build", "-o", caddyBin}
	if os.Getenv("KEYGATE_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/caddy")
	build := exec.Command("go", args...)
	build.Dir = ".." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAILED to build Caddy (go %s): %v\n%s\n", strings.Join(args, " "), err, out)
		return 1
	}
	return m.Run()
}

// Waits. Generous, because a race-enabled Caddy on a busy 2-core machine
// is slow to start; none of them is an assertion about speed.
const (
	startTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
	cliTimeout   = 60 * time.Second
)

// freePort returns a loopback port that was free a moment ago and that no
// other test of this process has been given. Caddy binds with
// SO_REUSEPORT, so two gateways given the same port would both start and
// share it silently; see testport for how collisions are avoided.
func freePort(t testing.TB) int { return testport.Free(t) }

// randomPepper returns a pepper of the right size for a test store.
func randomPepper() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// storeKind is one of the key stores the [both] tests run against.
type storeKind string

const (
	sqliteStore   storeKind = "sqlite"
	postgresStore storeKind = "postgres"
)

// forEachStore runs f as the parallel subtests "sqlite" and "postgres",
// each with a sandbox of its own.
func forEachStore(t *testing.T, f func(t *testing.T, sb *sandbox)) {
	t.Parallel()
	for _, kind := range []storeKind{sqliteStore, postgresStore} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f(t, newSandbox(t, kind))
		})
	}
}

// sandbox is what a gateway and the CLI share: private XDG directories
// (hence the default embedded store and its pepper file), the environment
// and, for PostgreSQL, a private database and pepper.
type sandbox struct {
	t      *testing.T
	dir    string
	kind   storeKind
	dsn    string // PostgreSQL only
	pepper string // PostgreSQL only; the gateway's pepper
	env    []string
}

func newSandbox(t *testing.T, kind storeKind) *sandbox {
	t.Helper()
	sb := &sandbox{t: t, dir: t.TempDir(), kind: kind}
	// The outer environment must not choose the store or pepper.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			sb.env = append(sb.env, kv)
		}
	}
	sb.env = append(sb.env,
		"XDG_DATA_HOME="+filepath.Join(sb.dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(sb.dir, "config"))
	if kind == postgresStore {
		sb.dsn = pgtest.NewDatabase(t)
		sb.pepper = randomPepper()
		// The CLI finds both in the environment; the Caddyfile names the
		// database and takes the pepper from the environment.
		sb.env = append(sb.env, "KEYGATE_DATABASE="+sb.dsn, "KEYGATE_PEPPER="+sb.pepper)
	}
	return sb
}

// forTest returns the sandbox for use by t, a subtest of its own test.
func (sb *sandbox) forTest(t *testing.T) *sandbox {
	c := *sb
	c.t = t
	return &c
}

// setenv adds or replaces a variable for the processes started later.
func (sb *sandbox) setenv(name, value string) {
	for i, kv := range sb.env {
		if strings.HasPrefix(kv, name+"=") {
			sb.env[i] = name + "=" + value
			return
		}
	}
	sb.env = append(sb.env, name+"="+value)
}

// unsetenv removes a variable for the processes started later.
func (sb *sandbox) unsetenv(name string) {
	kept := sb.env[:0]
	for _, kv := range sb.env {
		if !strings.HasPrefix(kv, name+"=") {
			kept = append(kept, kv)
		}
	}
	sb.env = kept
}

// storeOptions are the api_key subdirectives that select the sandbox's
// store: none for the embedded default.
func (sb *sandbox) storeOptions() string {
	if sb.kind == postgresStore {
		return "database " + sb.dsn + "\n\t\tpepper {env.KEYGATE_PEPPER}"
	}
	return ""
}

// dataDir is Caddy's data directory (caddy.AppDataDir) in the sandbox.
func (sb *sandbox) dataDir() string { return filepath.Join(sb.dir, "data", "caddy") }

// sqlitePath is where the default embedded store lives.
func (sb *sandbox) sqlitePath() string { return filepath.Join(sb.dataDir(), "keygate", "keys.db") }

// sql runs a statement on the sandbox's store behind Keygate's back, as
// someone with access to the database would.
func (sb *sandbox) sql(query string) {
	sb.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	if sb.kind == postgresStore {
		conn, err := pgx.Connect(ctx, sb.dsn)
		if err != nil {
			sb.t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, query); err != nil {
			sb.t.Fatalf("%s: %v", query, err)
		}
		return
	}
	db, err := sql.Open("sqlite", sb.sqlitePath())
	if err != nil {
		sb.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, query); err != nil {
		sb.t.Fatalf("%s: %v", query, err)
	}
}

// dump returns everything the store holds, as bytes or SQL text. For the
// embedded store it stops g first: stopping Caddy closes the store, which
// checkpoints the WAL (the side files are read anyway, in case something
// is left there).
func (sb *sandbox) dump(g *gateway) string {
	sb.t.Helper()
	switch sb.kind {
	case sqliteStore:
		g.stop()
		var dump string
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			b, err := os.ReadFile(sb.sqlitePath() + suffix)
			if err != nil && !(suffix != "" && os.IsNotExist(err)) {
				sb.t.Fatalf("reading the store: %v", err)
			}
			dump += string(b)
		}
		return dump
	case postgresStore:
		out, err := exec.Command("pg_dump", "--dbname="+sb.dsn).CombinedOutput()
		if err != nil {
			sb.t.Fatalf("pg_dump: %v\n%s", err, out)
		}
		return string(out)
	}
	sb.t.Fatalf("unknown store kind %v", sb.kind)
	return ""
}

// cliResult is what one CLI run printed and how it ended.
type cliResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("`caddy %s` exited %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// run runs the binary with the sandbox's environment.
func (sb *sandbox) run(args ...string) cliResult {
	sb.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, args...)
	cmd.SysProcAttr = childProcAttr()
	cmd.Env = sb.env
	cmd.Dir = sb.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	default:
		sb.t.Fatalf("running caddy %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		sb.t.Fatalf("caddy %s did not finish within %v\n%s", strings.Join(args, " "), cliTimeout, res)
	}
	return res
}

// cli runs `caddy api-key <args...>`.
func (sb *sandbox) cli(args ...string) cliResult {
	sb.t.Helper()
	return sb.run(append([]string{"api-key"}, args...)...)
}

// mustCLI runs the CLI and fails the test unless it succeeds.
func (sb *sandbox) mustCLI(args ...string) cliResult {
	sb.t.Helper()
	res := sb.cli(args...)
	if res.code != 0 {
		sb.t.Fatalf("CLI failed: %s", res)
	}
	return res
}

// issuedKey is the JSON `create --json` prints.
type issuedKey struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Owner     string            `json:"owner"`
	Scopes    []string          `json:"scopes"`
	Metadata  map[string]string `json:"metadata"`
	Hint      string            `json:"hint"`
	ExpiresAt time.Time         `json:"expires_at"`
	Key       string            `json:"key"`
}

// createKey issues a key through the CLI; args are extra create flags.
func (sb *sandbox) createKey(name string, args ...string) issuedKey {
	sb.t.Helper()
	res := sb.mustCLI(append([]string{"create", "--name", name, "--json"}, args...)...)
	var k issuedKey
	if err := json.Unmarshal([]byte(res.stdout), &k); err != nil {
		sb.t.Fatalf("create --json printed no key object: %v\n%s", err, res)
	}
	if k.ID == "" || k.Key == "" {
		sb.t.Fatalf("create --json lacks id or key:\n%s", res)
	}
	return k
}

// revoke revokes a key through the CLI.
func (sb *sandbox) revoke(id string) {
	sb.t.Helper()
	sb.mustCLI("revoke", id)
}

// secretOf returns the 43-character secret part of a key: everything
// between the id's separator and the 6-character checksum.
func secretOf(key string) string {
	const secretLen, checksumLen = 43, 6
	return key[len(key)-checksumLen-secretLen : len(key)-checksumLen]
}

// gateway is one Caddy process.
type gateway struct {
	t     *testing.T
	sb    *sandbox
	port  int    // the main site's port
	url   string // http://127.0.0.1:port
	admin string // admin endpoint address
	debug bool   // set the global debug option
	// globals are extra global options, one per line, tab-indented.
	globals string

	cfgPath string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stopped sync.Once
}

// newGateway reserves the ports of a Caddy process; start it with start.
func newGateway(t *testing.T, sb *sandbox) *gateway {
	t.Helper()
	g := &gateway{t: t, sb: sb, port: freePort(t)}
	g.url = fmt.Sprintf("http://127.0.0.1:%d", g.port)
	g.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	g.cfgPath = filepath.Join(sb.dir, "Caddyfile")
	g.logPath = filepath.Join(sb.dir, "caddy.log")
	return g
}

// site wraps body in a site block for the main port, bound to loopback.
func (g *gateway) site(body string) string {
	return siteBlock(g.port, body)
}

// siteBlock is a plain-HTTP site on a loopback port.
func siteBlock(port int, body string) string {
	return fmt.Sprintf("http://127.0.0.1:%d {\n\tbind 127.0.0.1\n%s\n}\n", port, body)
}

// caddyfile puts the global options in front of the site blocks. The admin
// endpoint gets its own port so that gateways run side by side.
func (g *gateway) caddyfile(sites string) string {
	debug := ""
	if g.debug {
		debug = "\tdebug\n"
	}
	return fmt.Sprintf("{\n\tadmin %s\n\tauto_https off\n%s%s}\n\n%s", g.admin, debug, g.globals, sites)
}

// start writes the Caddyfile, starts Caddy and waits until the admin
// endpoint, the main site and any extra ports accept connections. Caddy
// is stopped when the test ends.
func (g *gateway) start(sites string, extraPorts ...int) {
	g.t.Helper()
	g.startConfig(g.caddyfile(sites), extraPorts...)
}

// startConfig starts Caddy with a whole Caddyfile, global options
// included; it must listen on g.port and admin on g.admin.
func (g *gateway) startConfig(cfg string, extraPorts ...int) {
	g.t.Helper()
	if err := os.WriteFile(g.cfgPath, []byte(cfg), 0o600); err != nil {
		g.t.Fatal(err)
	}
	logFile, err := os.Create(g.logPath)
	if err != nil {
		g.t.Fatal(err)
	}
	defer logFile.Close() // the child holds its own descriptor
	g.cmd = exec.Command(caddyBin, "run", "--config", g.cfgPath, "--adapter", "caddyfile")
	g.cmd.SysProcAttr = childProcAttr()
	g.cmd.Env = g.sb.env
	g.cmd.Dir = g.sb.dir
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	if err := g.cmd.Start(); err != nil {
		g.t.Fatalf("starting Caddy: %v", err)
	}
	g.exited = make(chan struct{})
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()
	g.t.Cleanup(g.stop)

	addrs := []string{g.admin, fmt.Sprintf("127.0.0.1:%d", g.port)}
	for _, p := range extraPorts {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	deadline := time.Now().Add(startTimeout)
	for _, addr := range addrs {
		waitListening(g.t, "Caddy", addr, deadline, g.exited, func() error { return g.waitErr }, g.log)
	}
}

// waitListening waits until addr accepts connections. It fails the test,
// showing logs, if the process (named what) exits first (exited is
// closed; exitErr is then its error) or the deadline passes.
func waitListening(t testing.TB, what, addr string, deadline time.Time, exited <-chan struct{}, exitErr func() error, logs func() string) {
	t.Helper()
	for {
		select {
		case <-exited:
			t.Fatalf("%s exited during start-up (%v); log:\n%s", what, exitErr(), logs())
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s within %v; log:\n%s", what, addr, startTimeout, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGINT, which makes Caddy shut down gracefully (closing the
// key store, so SQLite checkpoints its WAL), and kills it if it hangs.
func (g *gateway) stop() {
	g.stopped.Do(func() {
		if g.cmd == nil || g.cmd.Process == nil {
			return
		}
		select {
		case <-g.exited:
			return
		default:
		}
		g.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-g.exited:
		case <-time.After(stopTimeout):
			g.cmd.Process.Kill()
			<-g.exited
			g.t.Errorf("Caddy did not stop within %v of SIGINT and was killed; log:\n%s", stopTimeout, g.log())
		}
	})
}

// log returns everything Caddy wrote to stdout and stderr so far.
func (g *gateway) log() string {
	b, err := os.ReadFile(g.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", g.logPath, err)
	}
	return string(b)
}

// reload replaces the running config through `caddy reload`.
func (g *gateway) reload(sites string) cliResult {
	g.t.Helper()
	path := filepath.Join(g.sb.dir, "Caddyfile.reload")
	if err := os.WriteFile(path, []byte(g.caddyfile(sites)), 0o600); err != nil {
		g.t.Fatal(err)
	}
	return g.sb.run("reload", "--config", path, "--adapter", "caddyfile", "--address", g.admin)
}

// recordedRequest is what the upstream saw of one request.
type recordedRequest struct {
	Method     string
	Host       string
	URL        string
	RawQuery   string
	RequestURI string
	Header     http.Header
	Trailer    http.Header // read after the whole body
	Cookies    []*http.Cookie
}

// String renders everything the upstream received, for searching it.
func (r recordedRequest) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %s %s\n", r.Method, r.Host, r.URL, r.RawQuery, r.RequestURI)
	for name, vals := range r.Header {
		for _, v := range vals {
			fmt.Fprintf(&b, "%s: %s\n", name, v)
		}
	}
	for name, vals := range r.Trailer {
		for _, v := range vals {
			fmt.Fprintf(&b, "trailer %s: %s\n", name, v)
		}
	}
	for _, c := range r.Cookies {
		fmt.Fprintf(&b, "cookie %s=%s\n", c.Name, c.Value)
	}
	return b.String()
}

// upstream is the API behind the gateway. It records every request.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recordedRequest
}

// upstreamBody is what the upstream answers, so tests can tell its
// answers from the gateway's.
const upstreamBody = `{"upstream":"ok"}`

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, recordedRequest{
			Method:     r.Method,
			Host:       r.Host,
			URL:        r.URL.String(),
			RawQuery:   r.URL.RawQuery,
			RequestURI: r.RequestURI,
			Header:     r.Header.Clone(),
			Trailer:    r.Trailer.Clone(),
			Cookies:    r.Cookies(),
		})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, upstreamBody)
	}))
	t.Cleanup(u.Close)
	return u
}

// requests returns a copy of what was recorded so far.
func (u *upstream) requests() []recordedRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recordedRequest(nil), u.reqs...)
}

// hostPort is the upstream's address for reverse_proxy.
func (u *upstream) hostPort() string { return strings.TrimPrefix(u.URL, "http://") }

// response is a read HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// problem is the problem+json body of a refusal.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	// Rows are the bad lines of a rejected import (admin API).
	Rows []struct {
		Line  int    `json:"line"`
		Error string `json:"error"`
	} `json:"rows"`
}

func (r response) problem(t testing.TB) problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, r.body)
	}
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("body is not a problem: %v: %s", err, r.body)
	}
	return p
}

// httpClient has a deadline so that a hung gateway fails the test.
var httpClient = &http.Client{Timeout: 15 * time.Second}

// do sends req and reads the answer.
func do(t testing.TB, req *http.Request) response {
	t.Helper()
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Redacted(), err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading answer to %s %s: %v", req.Method, req.URL.Redacted(), err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}
}

// newRequest builds a GET; header is a list of name, value pairs.
func newRequest(t testing.TB, url string, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return req
}

// get sends a GET with the given header pairs.
func get(t testing.TB, url string, header ...string) response {
	t.Helper()
	return do(t, newRequest(t, url, header...))
}

// bearer sends key as a Bearer token.
func bearer(t testing.TB, url, key string) response {
	t.Helper()
	return get(t, url, "Authorization", "Bearer "+key)
}

// wantStatus fails the test unless r has the status.
func wantStatus(t testing.TB, what string, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body: %s", what, r.status, status, r.body)
	}
}

// wantUpstream fails the test unless r is the upstream's answer.
func wantUpstream(t testing.TB, what string, r response) {
	t.Helper()
	wantStatus(t, what, r, http.StatusOK)
	if string(r.body) != upstreamBody {
		t.Fatalf("%s: body %q, want the upstream's %q", what, r.body, upstreamBody)
	}
}

// pollUntil calls f every interval until it returns true or limit passes;
// it reports whether f succeeded and how long that took.
func pollUntil(limit, interval time.Duration, f func() bool) (bool, time.Duration) {
	start := time.Now()
	for {
		if f() {
			return true, time.Since(start)
		}
		if time.Since(start) > limit {
			return false, time.Since(start)
		}
		time.Sleep(interval)
	}
}

// unknownKey returns a well-formed key that no store holds.
func unknownKey(t testing.TB) string {
	t.Helper()
	f, err := keystore.NewFormat("")
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := f.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// watchingLog is what a gateway logs when its key change watch starts or
// comes back.
const watchingLog = "watching key store for changes"

// waitForLog waits until g's log holds substr at least n times.
func waitForLog(t testing.TB, g *gateway, substr string, n int, limit time.Duration) {
	t.Helper()
	if ok, _ := pollUntil(limit, 20*time.Millisecond, func() bool {
		return strings.Count(g.log(), substr) >= n
	}); !ok {
		t.Fatalf("gateway did not log %q %d times within %v; log:\n%s", substr, n, limit, g.log())
	}
}

// metrics returns the gateway's Prometheus metrics, by series as printed
// (name{labels}).
func metrics(t testing.TB, g *gateway) map[string]float64 {
	t.Helper()
	res, err := httpClient.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("reading metrics: status %d, %v", res.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// metric returns one series of the gateway's metrics.
func metric(t testing.TB, g *gateway, series string) float64 {
	t.Helper()
	v, ok := metrics(t, g)[series]
	if !ok {
		t.Fatalf("metric %s not exposed at http://%s/metrics", series, g.admin)
	}
	return v
}
