package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// fencedBlocks returns the fenced code blocks of a Markdown file whose
// info string is lang.
func fencedBlocks(t *testing.T, path, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?ms)^( *)```" + lang + "\n(.*?)^ *```")
	var out []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		indent := m[1]
		var lines []string
		for _, l := range strings.Split(m[2], "\n") {
			lines = append(lines, strings.TrimPrefix(l, indent))
		}
		out = append(out, strings.Join(lines, "\n"))
	}
	return out
}

// TestREADMETour runs the README's five-minute tour, pasted whole, as a
// script against a gateway started from Caddyfile.example, as a new user
// would (only the ports differ, so that tests can run side by side).
func TestREADMETour(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	g := newGateway(t, sb)
	upPort := freePort(t)
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"admin localhost:2019", "admin "+g.admin,
		":8080 {", fmt.Sprintf(":%d {", g.port),
		":9080 {", fmt.Sprintf(":%d {", upPort),
		"127.0.0.1:9080", fmt.Sprintf("127.0.0.1:%d", upPort),
	).Replace(string(example))
	if !strings.Contains(cfg, fmt.Sprintf(":%d {", g.port)) || !strings.Contains(cfg, fmt.Sprintf("reverse_proxy 127.0.0.1:%d", upPort)) {
		t.Fatalf("Caddyfile.example changed shape; the test cannot move its ports:\n%s", cfg)
	}
	g.startConfig(cfg, upPort)

	var tour string
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile("(?s)### Five-minute tour.*?```sh\n(.*?)```").FindSubmatch(readme); m != nil {
		tour = string(m[1])
	}
	if !strings.Contains(tour, "go build -o caddy ./cmd/caddy") || !strings.Contains(tour, "localhost:8080") {
		t.Fatalf("the README tour changed shape:\n%s", tour)
	}
	// The binary is built already; everything else runs as written.
	script := strings.NewReplacer(
		"go build -o caddy ./cmd/caddy", "ln -sf "+caddyBin+" caddy",
		"localhost:8080", fmt.Sprintf("127.0.0.1:%d", g.port),
	).Replace(tour)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = sb.dir
	cmd.Env = sb.env
	cmd.SysProcAttr = childProcAttr()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the tour failed: %v\n%s\ngateway log:\n%s", err, out.String(), g.log())
	}
	got := out.String()
	// The tour's own checks, as a reader would look at its output.
	for _, want := range []string{
		`"code":"missing_key"`,                                       // no key
		`"upstream": "legacy-api"`, `"key_id": "`, `"owner": "acme"`, // accepted, identity set
		`"code":"invalid_key"`, // the mistyped key
		"Revoked key ",         // revoke
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the tour's output lacks %q:\n%s", want, got)
		}
	}
	if i := strings.LastIndex(got, "HTTP/1.1 "); i < 0 || !strings.HasPrefix(got[i:], "HTTP/1.1 401") {
		t.Errorf("the tour's last answer is not the revoked key's 401:\n%s", got)
	}
	if strings.Contains(got, `"x_api_key": "kg_`) || strings.Contains(got, `"authorization": "Bearer`) {
		t.Errorf("the demo upstream saw a key:\n%s", got)
	}
	if strings.Contains(got, "forged") || strings.Contains(got, `"key_id": "admin"`) {
		t.Errorf("a forged identity reached the upstream:\n%s", got)
	}
}

// TestDocsCaddyfilesFormatted: every Caddyfile snippet in the README and
// docs reads the way `caddy fmt` writes it.
func TestDocsCaddyfilesFormatted(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md", "../xcaddy.md")
	n := 0
	for _, f := range files {
		for _, block := range fencedBlocks(t, f, "caddyfile") {
			n++
			if got := string(caddyfile.Format([]byte(block))); got != block {
				t.Errorf("%s: a Caddyfile snippet is not as `caddy fmt` writes it:\n%s\nwant:\n%s", f, block, got)
			}
		}
	}
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(caddyfile.Format(example)); got != string(example) {
		t.Errorf("Caddyfile.example is not as `caddy fmt` writes it:\n%s", got)
	}
	if n == 0 {
		t.Fatal("no Caddyfile snippets found: the test reads nothing")
	}
}
