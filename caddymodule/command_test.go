package caddymodule

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
)

func TestParseExpiry(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{in: "", want: time.Time{}},
		{in: "30d", want: now.Add(30 * 24 * time.Hour)},
		{in: "2w", want: now.Add(14 * 24 * time.Hour)},
		{in: "12h", want: now.Add(12 * time.Hour)},
		{in: "1d12h", want: now.Add(36 * time.Hour)},
		{in: "90s", want: now.Add(90 * time.Second)},
		{in: "2030-06-01T08:30:00Z", want: time.Date(2030, 6, 1, 8, 30, 0, 0, time.UTC)},
		{in: "2030-06-01T08:30:00+02:00", want: time.Date(2030, 6, 1, 6, 30, 0, 0, time.UTC)},
		{in: "2030-06-01T08:30:00.25Z", want: time.Date(2030, 6, 1, 8, 30, 0, 250e6, time.UTC)},
		{in: "2030-06-01", want: time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)},
		{in: "2030-01-02", want: time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)},

		{in: "0s", wantErr: "the duration must be positive"},
		{in: "0d", wantErr: "the duration must be positive"},
		{in: "-1h", wantErr: "the duration must be positive"},
		{in: "2029-12-31T23:59:59Z", wantErr: "is in the past"},
		{in: "2030-01-01T12:00:00Z", wantErr: "is in the past"}, // now is not the future
		{in: "2030-01-01", wantErr: "is in the past"},           // midnight, before noon
		{in: "1999-01-01", wantErr: "is in the past"},
		{in: "tomorrow", wantErr: "is neither a duration"},
		{in: "30", wantErr: "is neither a duration"},
		{in: "2030-13-01", wantErr: "is neither a duration"},
		{in: "2030-06-01 08:30:00", wantErr: "is neither a duration"},
		{in: "01/06/2030", wantErr: "is neither a duration"},
	}
	for _, tt := range tests {
		got, err := parseExpiry(tt.in, now)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseExpiry(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("parseExpiry(%q): %v", tt.in, err)
		case !got.Equal(tt.want):
			t.Errorf("parseExpiry(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseMetadata(t *testing.T) {
	tests := []struct {
		in      []string
		want    map[string]string
		wantErr string
	}{
		{in: nil, want: nil},
		{in: []string{}, want: nil},
		{in: []string{"team=core"}, want: map[string]string{"team": "core"}},
		// Only the first '=' separates; values may be empty.
		{in: []string{"a=1", "url=https://x/?q=1", "empty="}, want: map[string]string{"a": "1", "url": "https://x/?q=1", "empty": ""}},
		{in: []string{"team"}, wantErr: `--metadata "team" is not key=value`},
		{in: []string{"a=1", "b"}, wantErr: `--metadata "b" is not key=value`},
		{in: []string{"a=1", "a=2"}, wantErr: `--metadata key "a" given twice`},
		{in: []string{"a=1", "a=1"}, wantErr: `--metadata key "a" given twice`},
	}
	for _, tt := range tests {
		got, err := parseMetadata(tt.in)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseMetadata(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("parseMetadata(%q): %v", tt.in, err)
		case !reflect.DeepEqual(got, tt.want):
			t.Errorf("parseMetadata(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestKeyIDArg(t *testing.T) {
	format, _ := keystore.NewFormat("")
	key, id, err := format.Generate()
	if err != nil {
		t.Fatal(err)
	}
	long, _ := keystore.NewFormat("acme_live")
	longKey, _, err := long.Generate()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in      string
		wantErr string
	}{
		{in: id},
		{in: "AbCdEf123456"},
		{in: key, wantErr: "looks like a key"},
		{in: longKey, wantErr: "looks like a key"},
		{in: "", wantErr: "is not a key id"},
		{in: "abc", wantErr: `"abc" is not a key id`},
		{in: "AbCdEf1234567", wantErr: "is not a key id"},
		{in: "AbCdEf12345!", wantErr: "is not a key id"},
		{in: "_" + id, wantErr: "is not a key id"},
		{in: "k__g_" + id, wantErr: "is not a key id"},
	}
	for _, tt := range tests {
		got, err := keyIDArg(tt.in)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("keyIDArg(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			// The error must not echo a key back into a terminal or log.
			if err != nil && len(tt.in) > 40 && strings.Contains(err.Error(), tt.in) {
				t.Errorf("keyIDArg error quotes the key: %v", err)
			}
		case err != nil || got != tt.in:
			t.Errorf("keyIDArg(%q) = %q, %v", tt.in, got, err)
		}
	}
	// The id as the key starts, with its prefix, is the id.
	for _, in := range []string{"kg_" + id, "acme_live_" + id} {
		if got, err := keyIDArg(in); err != nil || got != id {
			t.Errorf("keyIDArg(%q) = %q, %v; want %q", in, got, err, id)
		}
	}
}

// runCLI runs `caddy api-key <args>` in-process, with the command tree
// built by the very CobraFunc that command.go registers with Caddy.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCLIStdin(t, "", args...)
}

// runCLIStdin is runCLI with stdin.
func runCLIStdin(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	reg, ok := caddycmd.Commands()["api-key"]
	if !ok || reg.CobraFunc == nil {
		t.Fatal("the api-key command is not registered")
	}
	// Mounted under a root as in Caddy: cobra treats a root command's
	// arguments differently from a subcommand's.
	root := &cobra.Command{Use: "caddy", SilenceUsage: true, SilenceErrors: true}
	cmd := &cobra.Command{Use: reg.Name}
	reg.CobraFunc(cmd)
	root.AddCommand(cmd)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{reg.Name}, args...))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// cliEnvironment isolates the CLI from the caller's environment.
func cliEnvironment(t *testing.T) {
	for _, name := range []string{"KEYGATE_DATABASE", "KEYGATE_PEPPER", "KEYGATE_PEPPER_FILE", "KEYGATE_PREFIX"} {
		t.Setenv(name, "")
	}
}

func TestCLILifecycle(t *testing.T) {
	cliEnvironment(t)
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	db := "--database=" + dsn

	// create, without a pepper: the embedded store's pepper file is made.
	out, errOut, err := runCLI(t, "create", db, "--name", "billing", "--owner", "acme",
		"--scopes", "write,read", "--scopes", "read", "--metadata", "team=core", "--expires", "30d", "--json")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	var created struct {
		ID        string            `json:"id"`
		Key       string            `json:"key"`
		Name      string            `json:"name"`
		Owner     string            `json:"owner"`
		Scopes    []string          `json:"scopes"`
		Metadata  map[string]string `json:"metadata"`
		Hint      string            `json:"hint"`
		ExpiresAt time.Time         `json:"expires_at"`
		Digest    any               `json:"digest"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("create --json printed %q: %v", out, err)
	}
	format, _ := keystore.NewFormat("")
	parsed, err := format.Parse(created.Key)
	if err != nil || parsed.ID != created.ID || !keystore.ValidID(created.ID) {
		t.Fatalf("created id %q, key parse: %v", created.ID, err)
	}
	if created.Name != "billing" || created.Owner != "acme" || !reflect.DeepEqual(created.Scopes, []string{"read", "write"}) ||
		created.Metadata["team"] != "core" || created.Digest != nil || !strings.HasPrefix(created.Hint, "kg_"+created.ID) {
		t.Errorf("create --json: %s", out)
	}
	if d := time.Until(created.ExpiresAt); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("expires_at %v is not 30 days from now", created.ExpiresAt)
	}
	id := created.ID

	// The gateway on the same store (and the same generated pepper)
	// accepts the key the CLI printed.
	h := provision(t, &Handler{Database: dsn})
	if s := serve(h, newRequest("/", bearer(created.Key))); s.next == nil {
		t.Fatalf("gateway refused the CLI's key: %d %s", s.rec.Code, s.rec.Body)
	}

	// create in text mode prints only the key on stdout.
	out, errOut, err = runCLI(t, "create", db, "--name", "second")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	second := strings.TrimSpace(out)
	if _, err := format.Parse(second); err != nil || strings.Count(out, "\n") != 1 {
		t.Errorf("create printed %q: %v", out, err)
	}
	if !strings.Contains(errOut, "shown only this once") || strings.Contains(errOut, second) {
		t.Errorf("create stderr %q", errOut)
	}

	out, _, err = runCLI(t, "list", db, "--json")
	var listed []keystore.Key
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 2 || listed[0].ID != id {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "list", db, "--owner", "acme")
	if err != nil || !strings.HasPrefix(out, "ID") || !strings.Contains(out, id) || strings.Count(out, "\n") != 2 {
		t.Errorf("list --owner acme: %v\n%s", err, out)
	}

	out, _, err = runCLI(t, "show", id, db)
	if err != nil || !strings.Contains(out, "ID:") || !strings.Contains(out, id) || !strings.Contains(out, "active") ||
		!strings.Contains(out, "Metadata team:") {
		t.Errorf("show: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "show", id, db, "--json")
	var shown keystore.Key
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown.ID != id || shown.Name != "billing" {
		t.Errorf("show --json: %v\n%s", err, out)
	}

	out, _, err = runCLI(t, "revoke", id, db)
	if err != nil || !strings.HasPrefix(out, "Revoked key "+id+" at ") {
		t.Errorf("revoke: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "revoke", id, db)
	if err != nil || !strings.HasPrefix(out, "Key "+id+" was already revoked at ") {
		t.Errorf("second revoke: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "revoke", id, db, "--json")
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown.RevokedAt.IsZero() {
		t.Errorf("revoke --json: %v\n%s", err, out)
	}

	// Revoked keys leave the default list but stay in --all.
	out, _, err = runCLI(t, "list", db, "--json")
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 || listed[0].ID == id {
		t.Errorf("list after revoke: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "list", db, "--all", "--limit", "1", "--json")
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 || listed[0].ID != id || listed[0].RevokedAt.IsZero() {
		t.Errorf("list --all --limit 1: %v\n%s", err, out)
	}

	out, _, err = runCLI(t, "migrate", db)
	if err != nil || !strings.Contains(out, "was already up to date (schema version ") || !strings.Contains(out, "nothing applied") {
		t.Errorf("migrate: %v\n%s", err, out)
	}

	// KEYGATE_DATABASE stands in for --database.
	t.Setenv("KEYGATE_DATABASE", dsn)
	out, _, err = runCLI(t, "show", id)
	if err != nil || !strings.Contains(out, "revoked") {
		t.Errorf("show with KEYGATE_DATABASE: %v\n%s", err, out)
	}
}

func TestCLIErrors(t *testing.T) {
	cliEnvironment(t)
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	db := "--database=" + dsn
	if _, _, err := runCLI(t, "create", db, "--name", "seed"); err != nil {
		t.Fatal(err)
	}
	format, _ := keystore.NewFormat("")
	key, _, _ := format.Generate()
	wrongPepper := "5f2a8c1e7d3b90a46e1c5f8b2d7a03e9c6b4f1d85a2e7c03b9d6f4a18e5c2b70"
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"create without name", []string{"create", db}, "--name is required"},
		{"create blank name", []string{"create", db, "--name", " "}, "name is required"},
		{"create bad expires", []string{"create", db, "--name", "x", "--expires", "someday"}, "is neither a duration"},
		{"create negative expires", []string{"create", db, "--name", "x", "--expires=-1h"}, "must be positive"},
		{"create past expires", []string{"create", db, "--name", "x", "--expires", "2001-01-01"}, "is in the past"},
		{"create bad metadata", []string{"create", db, "--name", "x", "--metadata", "novalue"}, "is not key=value"},
		{"create duplicate metadata", []string{"create", db, "--name", "x", "--metadata", "a=1", "--metadata", "a=2"}, "given twice"},
		{"create bad scope", []string{"create", db, "--name", "x", "--scopes", "bad scope"}, `scope "bad scope"`},
		{"create bad prefix", []string{"create", db, "--name", "x", "--prefix", "bad__prefix"}, "--prefix:"},
		{"create extra argument", []string{"create", db, "--name", "x", "extra"}, `unknown command "extra"`},
		// A wrong pepper is refused before a key is made.
		{"create wrong pepper", []string{"create", db, "--name", "x", "--pepper", wrongPepper}, "pepper does not match"},
		{"create short pepper", []string{"create", db, "--name", "x", "--pepper", "short"}, "pepper is too short"},
		{"create postgres without pepper", []string{"create", "--database=postgres://u@127.0.0.1:1/db", "--name", "x"}, "pepper is required with PostgreSQL"},
		{"unsupported database", []string{"list", "--database=mysql://u:hunter2@127.0.0.1/db"}, "unsupported database"},
		{"list negative limit", []string{"list", db, "--limit", "-1"}, "--limit must not be negative"},
		{"list unknown status", []string{"list", db, "--status", "active,valid"}, `unknown key status "valid" (valid: active, not_yet_valid, revoked, expired)`},
		{"list empty status", []string{"list", db, "--status", ""}, "--status needs one or more of: active, not_yet_valid, revoked, expired"},
		{"list all and status", []string{"list", db, "--all", "--status", "revoked"}, "give it or --status, not both"},
		{"list bad after", []string{"list", db, "--after", "abc"}, `--after: "abc" is not a key id`},
		{"list after a key", []string{"list", db, "--after", key}, "looks like a key"},
		{"list after unknown id", []string{"list", db, "--limit", "1", "--after", "AAAAAAAAAAAA"}, "--after AAAAAAAAAAAA: no key with that id"},
		{"zero timeout", []string{"list", db, "--timeout", "0s"}, "--timeout must be positive"},
		{"show bad id", []string{"show", db, "abc"}, `"abc" is not a key id`},
		{"show a key", []string{"show", db, key}, "looks like a key"},
		{"show unknown id", []string{"show", db, "AAAAAAAAAAAA"}, "no key with id AAAAAAAAAAAA"},
		{"show without id", []string{"show", db}, "accepts 1 arg(s)"},
		{"revoke unknown id", []string{"revoke", db, "AAAAAAAAAAAA"}, "no key with id AAAAAAAAAAAA"},
		{"revoke bad id", []string{"revoke", db, "not-an-id"}, "is not a key id"},
		{"revoke a key", []string{"revoke", db, key}, "looks like a key"},
		{"revoke id and owner", []string{"revoke", db, "AAAAAAAAAAAA", "--owner", "acme"}, "give a key id or --owner, not both"},
		{"revoke neither id nor owner", []string{"revoke", db}, "name what to revoke: a key id, or --owner OWNER"},
		{"revoke empty owner", []string{"revoke", db, "--owner", " "}, "owner is required"},
		{"revoke two ids", []string{"revoke", db, "AAAAAAAAAAAA", "BBBBBBBBBBBB"}, "accepts at most 1 arg(s)"},
		{"migrate extra argument", []string{"migrate", db, "now"}, `unknown command "now"`},
		{"unknown subcommand", []string{"nope"}, `unknown subcommand "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := runCLI(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q\nstdout %s\nstderr %s", err, tt.wantErr, out, errOut)
			}
			for _, secret := range []string{key, "hunter2", wrongPepper} {
				if strings.Contains(fmt.Sprint(err, out, errOut), secret) {
					t.Errorf("output reveals a secret: %v %s %s", err, out, errOut)
				}
			}
		})
	}
	// None of the failed creates made a key.
	out, _, err := runCLI(t, "list", db, "--all", "--json")
	var listed []keystore.Key
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 1 {
		t.Errorf("after failed creates the store holds %s (%v)", out, err)
	}
}

// Peppers for the CLI tests, shaped like `openssl rand -hex 32` output.
const (
	cliPepper      = "8b1f4c7e2a9d05b63e8f1a4c7d2b09e56a3f8c1d4e7b20a95c6f3e8d1b4a7c02"
	cliOtherPepper = "2e7a9c4f1b8d36e05a2c7f9b4d1e83a60c5f2b8e7d4a19c36b0e5f2a8d7c4b91"
)

// writeSecret writes content to a file in dir with mode.
func writeSecret(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// noSecrets fails the test if any output shows a pepper or password.
func noSecrets(t *testing.T, err error, out, errOut string, secrets ...string) {
	t.Helper()
	for _, secret := range append(secrets, cliPepper, cliOtherPepper) {
		if strings.Contains(fmt.Sprint(err, out, errOut), secret) {
			t.Errorf("output reveals a secret:\nerror %v\nstdout %s\nstderr %s", err, out, errOut)
		}
	}
}

// TestCLIPepperFile: --pepper-file and KEYGATE_PEPPER_FILE give the CLI
// the gateway's pepper without putting it on the command line.
func TestCLIPepperFile(t *testing.T) {
	cliEnvironment(t)
	dir := t.TempDir()
	// A directory the store makes itself is private: no warning about it.
	dsn := "sqlite:" + filepath.Join(dir, "store", "keys.db")
	db := "--database=" + dsn
	good := writeSecret(t, dir, "pepper", "\n"+cliPepper+"\n", 0o600)

	out, errOut, err := runCLI(t, "create", db, "--name", "from flag", "--pepper-file", good)
	if err != nil {
		t.Fatalf("create --pepper-file: %v\n%s", err, errOut)
	}
	noSecrets(t, err, out, errOut)
	if strings.Contains(errOut, "warning") {
		t.Errorf("create --pepper-file warned: %s", errOut)
	}
	// The key is the gateway's: the file's pepper, whitespace trimmed.
	h := provision(t, &Handler{Database: dsn, Pepper: cliPepper})
	if s := serve(h, newRequest("/", bearer(strings.TrimSpace(out)))); s.next == nil {
		t.Fatalf("gateway refused the key made with --pepper-file: %d %s", s.rec.Code, s.rec.Body)
	}
	t.Setenv("KEYGATE_PEPPER_FILE", good)
	out, errOut, err = runCLI(t, "create", db, "--name", "from env")
	if err != nil {
		t.Fatalf("create with KEYGATE_PEPPER_FILE: %v\n%s", err, errOut)
	}
	if s := serve(h, newRequest("/", bearer(strings.TrimSpace(out)))); s.next == nil {
		t.Fatalf("gateway refused the key made with KEYGATE_PEPPER_FILE: %d %s", s.rec.Code, s.rec.Body)
	}
	t.Setenv("KEYGATE_PEPPER_FILE", "")

	other := writeSecret(t, dir, "other", cliOtherPepper, 0o600)
	readable := writeSecret(t, dir, "readable", cliPepper, 0o640)
	weak := writeSecret(t, dir, "weak", strings.Repeat("ab", 32), 0o600)
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"another pepper", nil, []string{"--pepper-file", other}, "pepper does not match"},
		{"file readable by others", nil, []string{"--pepper-file", readable}, "is readable by other users (mode -rw-r-----); run: chmod 600 " + readable},
		{"env file readable by others", map[string]string{"KEYGATE_PEPPER_FILE": readable}, nil, "KEYGATE_PEPPER_FILE: pepper file " + readable + " is readable by other users"},
		{"missing file", nil, []string{"--pepper-file", filepath.Join(dir, "none")}, "--pepper-file: reading pepper file"},
		{"weak pepper", nil, []string{"--pepper-file", weak}, "pepper is not random"},
		{"both flags", nil, []string{"--pepper", cliPepper, "--pepper-file", good}, "--pepper and --pepper-file are both set: give the pepper one way only"},
		{"both env", map[string]string{"KEYGATE_PEPPER": cliPepper, "KEYGATE_PEPPER_FILE": good}, nil, "KEYGATE_PEPPER and KEYGATE_PEPPER_FILE are both set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, errOut, err := runCLI(t, append([]string{"create", db, "--name", "x"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q\nstderr %s", err, tt.wantErr, errOut)
			}
			noSecrets(t, err, out, errOut)
		})
	}
	out, _, err = runCLI(t, "list", db, "--all", "--json")
	var listed []keystore.Key
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 2 {
		t.Errorf("after failed creates the store holds %s (%v)", out, err)
	}
	// A pepper given on the command line wins over the environment's, as
	// the directive's pepper does.
	for name, c := range map[string]struct {
		env  map[string]string
		args []string
	}{
		"flag file over env pepper": {map[string]string{"KEYGATE_PEPPER": cliOtherPepper}, []string{"--pepper-file", good}},
		"flag pepper over env file": {map[string]string{"KEYGATE_PEPPER_FILE": other}, []string{"--pepper", "{env.KEYGATE_TEST_GOOD}"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("KEYGATE_TEST_GOOD", cliPepper)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			out, errOut, err := runCLI(t, append([]string{"create", db, "--name", name}, c.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			if s := serve(h, newRequest("/", bearer(strings.TrimSpace(out)))); s.next == nil {
				t.Fatalf("gateway refused the key: %d", s.rec.Code)
			}
		})
	}
}

// TestCLISecretWarnings: a pepper or a database password typed on the
// command line is visible in the process list; the CLI says so (without
// repeating it) and names the safe ways. So does a key store directory
// that other users can enter.
func TestCLISecretWarnings(t *testing.T) {
	cliEnvironment(t)
	const pepperWarning = "warning: --pepper on the command line is visible to other users in the process list; " +
		"use --pepper-file, KEYGATE_PEPPER_FILE or KEYGATE_PEPPER"
	dir := t.TempDir()
	pepperFile := writeSecret(t, dir, "pepper", cliPepper, 0o600)
	openDir := filepath.Join(dir, "open")
	if err := os.Mkdir(openDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openDir, 0o777); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // in stderr; "" for no warning at all
	}{
		{"literal pepper", nil, []string{"--pepper", cliPepper}, pepperWarning},
		{"literal pepper with =", nil, []string{"--pepper=" + cliPepper}, pepperWarning},
		{"env placeholder", map[string]string{"KEYGATE_TEST_CLI_PEPPER": cliPepper}, []string{"--pepper", "{env.KEYGATE_TEST_CLI_PEPPER}"}, ""},
		{"file placeholder", nil, []string{"--pepper", "{file." + pepperFile + "}"}, ""},
		{"KEYGATE_PEPPER", map[string]string{"KEYGATE_PEPPER": cliPepper}, nil, ""},
		{"pepper file", nil, []string{"--pepper-file", pepperFile}, ""},
		{"no pepper", nil, nil, ""},
		{"store directory others can write", nil, []string{"--database", "sqlite:" + filepath.Join(openDir, "keys.db")},
			"warning: key store directory " + openDir + " is writable by other users (mode 0777)"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append([]string{"migrate", "--database=sqlite:" + filepath.Join(dir, fmt.Sprint(i), "keys.db")}, tt.args...)
			out, errOut, err := runCLI(t, args...)
			if err != nil {
				t.Fatalf("migrate: %v\n%s", err, errOut)
			}
			noSecrets(t, err, out, errOut)
			if tt.want == "" && strings.Contains(errOut, "warning") || !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q, want %q", errOut, tt.want)
			}
		})
	}
}

// TestCLIDatabasePasswordWarning: a password in --database is visible in
// the process list; in KEYGATE_DATABASE, PGPASSWORD or ~/.pgpass it is not.
func TestCLIDatabasePasswordWarning(t *testing.T) {
	cliEnvironment(t)
	const warning = "warning: --database on the command line contains a password, which is visible to other users " +
		"in the process list; use KEYGATE_DATABASE, or leave the password out and let PGPASSWORD or ~/.pgpass supply it"
	base, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts local connections: any password will do.
	withUserPassword := *base
	withUserPassword.User = url.UserPassword(base.User.Username(), "hunter2")
	withQueryPassword := *base
	q := withQueryPassword.Query()
	q.Set("sslpassword", "hunter2")
	withQueryPassword.RawQuery = q.Encode()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"user password", nil, []string{"--database", withUserPassword.String()}, warning},
		{"query password", nil, []string{"--database=" + withQueryPassword.String()}, warning},
		{"no password", nil, []string{"--database", base.String()}, ""},
		{"KEYGATE_DATABASE", map[string]string{"KEYGATE_DATABASE": withUserPassword.String()}, nil, ""},
		{"placeholder", map[string]string{"KEYGATE_TEST_CLI_DB": withUserPassword.String()}, []string{"--database", "{env.KEYGATE_TEST_CLI_DB}"}, ""},
		{"PGPASSWORD", map[string]string{"PGPASSWORD": "hunter2"}, []string{"--database", base.String()}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, errOut, err := runCLI(t, append([]string{"migrate"}, tt.args...)...)
			if err != nil {
				t.Fatalf("migrate: %v\n%s", err, errOut)
			}
			noSecrets(t, err, out, errOut, "hunter2")
			if tt.want == "" && strings.Contains(errOut, "warning") || !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q, want %q", errOut, tt.want)
			}
		})
	}
}

// TestCLIStoreMustExist: commands that read or change keys refuse a store
// that does not exist, naming it, and create nothing; create and migrate
// make it, and say where.
func TestCLIStoreMustExist(t *testing.T) {
	cliEnvironment(t)
	dir := filepath.Join(t.TempDir(), "nonexistent-dir")
	db := "--database=sqlite:" + filepath.Join(dir, "k.db")
	for _, args := range [][]string{{"list"}, {"show", "AAAAAAAAAAAA"}, {"revoke", "AAAAAAAAAAAA"}, {"reset-pepper"}} {
		_, errOut, err := runCLI(t, append(args, db)...)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "k.db")) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%s on a missing store: %v\n%s", args[0], err, errOut)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s created %s", args[0], dir)
		}
	}
	// migrate --dry-run says what migrate would do, and does nothing.
	all, err := keystore.MigrationNames("sqlite:")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, "migrate", "--dry-run", db)
	if err != nil || !strings.Contains(out, "Would create sqlite:"+filepath.Join(dir, "k.db")+" and apply: "+strings.Join(all, ", ")) {
		t.Fatalf("migrate --dry-run of a missing store: %v\n%s", err, out)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("migrate --dry-run created %s", dir)
	}
	// migrate creates it and says what it applied, then that nothing is left.
	out, _, err = runCLI(t, "migrate", db)
	if err != nil || !strings.Contains(out, "Applied "+strings.Join(all, ", ")+" to sqlite:"+filepath.Join(dir, "k.db")) {
		t.Fatalf("migrate of a new store: %v\n%s", err, out)
	}
	if out, _, err = runCLI(t, "migrate", "--dry-run", db); err != nil || !strings.Contains(out, "up to date; nothing to apply") {
		t.Errorf("migrate --dry-run of a migrated store: %v\n%s", err, out)
	}
	out, errOut, err := runCLI(t, "list", db)
	if err != nil || !strings.Contains(errOut, "No keys in sqlite:"+filepath.Join(dir, "k.db")) {
		t.Errorf("list of an empty store: %v\n%s\n%s", err, out, errOut)
	}
	_, errOut, err = runCLI(t, "create", "--name", "x", db)
	if err != nil || !strings.Contains(errOut, " in sqlite:"+filepath.Join(dir, "k.db")+".") {
		t.Errorf("create does not say which store: %v\n%s", err, errOut)
	}
}

// TestCLIMigrateDryRun: on a store behind this build's schema, --dry-run
// lists what migrate would apply and applies nothing; read commands refuse
// the old schema and point at migrate.
func TestCLIMigrateDryRun(t *testing.T) {
	cliEnvironment(t)
	path := filepath.Join(t.TempDir(), "k.db")
	db := "--database=sqlite:" + path
	if _, _, err := runCLI(t, "migrate", db); err != nil {
		t.Fatal(err)
	}
	s, err := keystore.Open(context.Background(), "sqlite:"+path, keystore.Options{Schema: keystore.SchemaAsIs})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	// The store as the previous release left it, one migration behind
	// (its tables stay: --dry-run applies nothing).
	if _, err := raw.Exec("DELETE FROM keygate_schema_migrations WHERE version = (SELECT max(version) FROM keygate_schema_migrations)"); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	s.Close()
	out, _, err := runCLI(t, "migrate", "--dry-run", db)
	all, _ := keystore.MigrationNames("sqlite:")
	if err != nil || !strings.Contains(out, "Would apply to sqlite:"+path+": "+all[len(all)-1]) {
		t.Fatalf("migrate --dry-run: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, "list", db); err == nil || !strings.Contains(err.Error(), "caddy api-key migrate") {
		t.Errorf("list on an older schema: %v", err)
	}
}

// TestCLIHomeInDatabasePath: sqlite:~/… is the home directory, not a
// directory named "~".
func TestCLIHomeInDatabasePath(t *testing.T) {
	cliEnvironment(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	wd := t.TempDir()
	t.Chdir(wd)
	if _, errOut, err := runCLI(t, "create", "--name", "x", "--database=sqlite:~/keys.db"); err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	if _, err := os.Stat(filepath.Join(home, "keys.db")); err != nil {
		t.Errorf("the store is not in $HOME: %v", err)
	}
	if _, err := os.Stat(filepath.Join(wd, "~")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a directory named ~ was created (%v)", err)
	}
	if _, _, err := runCLI(t, "list", "--database=sqlite:~bob/keys.db"); err == nil || !strings.Contains(err.Error(), "~user") {
		t.Errorf("~bob: %v", err)
	}
}

// TestCLIPrefixMustBeAccepted: create refuses a prefix that no gateway on
// the store accepts (the gateways record theirs), and show and revoke take
// the id with its prefix.
func TestCLIPrefixMustBeAccepted(t *testing.T) {
	cliEnvironment(t)
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	db := "--database=" + dsn
	// No gateway yet: any prefix.
	if _, errOut, err := runCLI(t, "create", db, "--name", "early", "--prefix", "early"); err != nil {
		t.Fatalf("create before any gateway: %v\n%s", err, errOut)
	}
	provision(t, &Handler{Database: dsn, Prefix: "acme_live"})
	_, _, err := runCLI(t, "create", db, "--name", "x")
	if err == nil || !strings.Contains(err.Error(), `prefix "kg"`) || !strings.Contains(err.Error(), "use --prefix acme_live") {
		t.Fatalf("create with a prefix no gateway accepts: %v", err)
	}
	t.Setenv("KEYGATE_PREFIX", "acme_live")
	out, errOut, err := runCLI(t, "create", db, "--name", "x")
	if err != nil {
		t.Fatalf("create with KEYGATE_PREFIX: %v\n%s", err, errOut)
	}
	key := strings.TrimSpace(out)
	prefixedID := key[:strings.LastIndexByte(key, '_')] // ${KEY%_*}
	if out, _, err := runCLI(t, "show", db, prefixedID); err != nil || !strings.Contains(out, prefixedID[len("acme_live_"):]) {
		t.Fatalf("show %s: %v\n%s", prefixedID, err, out)
	}
	if _, _, err := runCLI(t, "show", db, "bad__"+prefixedID[len("acme_live_"):]); err == nil {
		t.Fatal("show accepted an id with a malformed prefix")
	}
}

// TestCLIDetails: scopes read as they are written, JSON says a key's
// status and whether a revoke changed anything.
func TestCLIDetails(t *testing.T) {
	cliEnvironment(t)
	db := "--database=sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	out, errOut, err := runCLI(t, "create", db, "--name", "x", "--scopes", "orders:read, orders:write", "--expires", "2w", "--json")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	var k struct {
		ID        string    `json:"id"`
		Scopes    []string  `json:"scopes"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(k.Scopes, []string{"orders:read", "orders:write"}) {
		t.Errorf("scopes %q", k.Scopes)
	}
	if d := time.Until(k.ExpiresAt); d < 13*24*time.Hour || d > 14*24*time.Hour {
		t.Errorf("--expires 2w gave %v", k.ExpiresAt)
	}
	out, _, err = runCLI(t, "list", db, "--json")
	if err != nil || !strings.Contains(out, `"status": "active"`) {
		t.Errorf("list --json: %v\n%s", err, out)
	}
	for i, want := range []string{`"changed": true`, `"changed": false`} {
		out, _, err = runCLI(t, "revoke", db, k.ID, "--json")
		if err != nil || !strings.Contains(out, want) || !strings.Contains(out, `"status": "revoked"`) {
			t.Errorf("revoke %d --json: %v\n%s", i+1, err, out)
		}
	}
	// With only a revoked key, list says where the key went.
	_, errOut, err = runCLI(t, "list", db)
	if err != nil || !strings.Contains(errOut, "No active keys in sqlite:") || !strings.Contains(errOut, "(1 revoked or expired: --all shows them)") {
		t.Errorf("list with only a revoked key: %v\n%s", err, errOut)
	}
}

// TestCLIResetPepper: a store that recorded a mistyped first pepper takes
// another after reset-pepper, as long as it holds no key.
func TestCLIResetPepper(t *testing.T) {
	cliEnvironment(t)
	db := "--database=sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	t.Setenv("KEYGATE_PEPPER", cliOtherPepper) // the mistake
	if _, _, err := runCLI(t, "migrate", db); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "list", db); err != nil {
		t.Fatal(err) // records the mistaken pepper
	}
	t.Setenv("KEYGATE_PEPPER", cliPepper)
	if _, _, err := runCLI(t, "create", db, "--name", "x"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("create with the right pepper before the reset: %v", err)
	}
	out, _, err := runCLI(t, "reset-pepper", db)
	if err != nil || !strings.Contains(out, "no longer records a pepper") {
		t.Fatalf("reset-pepper: %v\n%s", err, out)
	}
	if _, errOut, err := runCLI(t, "create", db, "--name", "x"); err != nil {
		t.Fatalf("create after the reset: %v\n%s", err, errOut)
	}
	if _, _, err := runCLI(t, "reset-pepper", db); err == nil || !strings.Contains(err.Error(), "holds keys (1,") || !strings.Contains(err.Error(), "use a new store") {
		t.Fatalf("reset-pepper with a key in the store: %v", err)
	}
}

// TestCLINewStoreIsAnnounced: a store made by a command (a mistyped path,
// say) is announced, and store paths are shown resolved.
func TestCLINewStoreIsAnnounced(t *testing.T) {
	cliEnvironment(t)
	dir := t.TempDir()
	t.Chdir(dir)
	_, errOut, err := runCLI(t, "create", "--name", "x", "--database=sqlite:typo/keys.db")
	want := "Created a new, empty key store at sqlite:" + filepath.Join(dir, "typo", "keys.db")
	if err != nil || !strings.Contains(errOut, want) {
		t.Fatalf("create on a new relative path: %v\n%s\nwant %q", err, errOut, want)
	}
	_, errOut, _ = runCLI(t, "create", "--name", "y", "--database=sqlite:typo/keys.db")
	if strings.Contains(errOut, "Created a new") {
		t.Errorf("an existing store was announced as new:\n%s", errOut)
	}
	if _, _, err := runCLI(t, "list", "--database=sqlite://var/keys.db"); err == nil || !strings.Contains(err.Error(), "relative path") {
		t.Errorf("sqlite://var/keys.db: %v", err)
	}
}

// TestCLIListStatusesAndPages: list --status selects keys by status, and
// --limit with --after walks every key once with the next page named on
// stderr only (stdout stays a JSON array).
func TestCLIListStatusesAndPages(t *testing.T) {
	cliEnvironment(t)
	db := "--database=sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	ids := cliKeys(t, db, []string{"--owner", "acme"}, []string{"--owner", "acme", "--not-before", "1h"}, []string{"--owner", "globex"}, nil)
	if _, _, err := runCLI(t, "revoke", db, ids[0]); err != nil {
		t.Fatal(err)
	}

	var walked []string
	after := []string{}
	for page := 0; page < 10; page++ {
		got, errOut := cliList(t, db, append([]string{"--all", "--limit", "2"}, after...)...)
		walked = append(walked, got...)
		if len(got) < 2 {
			if strings.Contains(errOut, "next page") {
				t.Errorf("a page that is not full names a next page: %s", errOut)
			}
			break
		}
		want := "next page: --after " + got[1] + "\n"
		if errOut != want {
			t.Fatalf("stderr of a full page: %q, want %q", errOut, want)
		}
		after = []string{"--after", got[1]}
	}
	if !reflect.DeepEqual(walked, ids) {
		t.Errorf("pages of 2 walked %v, want %v", walked, ids)
	}

	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, ids[1:]},
		{[]string{"--all"}, ids},
		{[]string{"--status", "revoked"}, ids[:1]},
		{[]string{"--status", "not_yet_valid", "--owner", "acme"}, ids[1:2]},
		{[]string{"--status", "active, not_yet_valid"}, ids[1:]},
		{[]string{"--status", "active", "--status", "revoked"}, []string{ids[0], ids[2], ids[3]}},
		{[]string{"--status", "active", "--after", ids[2]}, ids[3:]},
	} {
		if got, _ := cliList(t, db, c.args...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("list %v: %v, want %v", c.args, got, c.want)
		}
	}
	if got, errOut := cliList(t, db, "--status", "expired", "--status", "not_yet_valid", "--owner", "globex"); len(got) != 0 ||
		!strings.Contains(errOut, "No expired or not_yet_valid keys in sqlite:") || !strings.Contains(errOut, "(1 with another status: --all shows them)") {
		t.Errorf("list with no key of the statuses: %v\n%s", got, errOut)
	}
	if got, errOut := cliList(t, db, "--all", "--after", ids[3]); len(got) != 0 || !strings.Contains(errOut, "No more keys after "+ids[3]) {
		t.Errorf("list after the last key: %v\n%s", got, errOut)
	}
}

// cliKeys creates a key with each of args (create's flags) and returns
// their ids.
func cliKeys(t *testing.T, db string, args ...[]string) []string {
	t.Helper()
	var ids []string
	for _, a := range args {
		out, errOut, err := runCLI(t, append([]string{"create", db, "--name", "k", "--json"}, a...)...)
		var k keystore.Key
		if err != nil || json.Unmarshal([]byte(out), &k) != nil {
			t.Fatalf("create %v: %v\n%s", a, err, errOut)
		}
		ids = append(ids, k.ID)
	}
	return ids
}

// cliList runs list --json with args and returns the ids it listed and
// what it said on stderr.
func cliList(t *testing.T, db string, args ...string) (ids []string, errOut string) {
	t.Helper()
	out, errOut, err := runCLI(t, append([]string{"list", db, "--json"}, args...)...)
	var keys []keystore.Key
	if err != nil || json.Unmarshal([]byte(out), &keys) != nil {
		t.Fatalf("list %v: %v\nstdout %s\nstderr %s", args, err, out, errOut)
	}
	ids = []string{}
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	return ids, errOut
}

// TestCLIRevokeOwner: revoke --owner revokes all of an owner's keys and no
// other, once, saying what it did in text and JSON.
func TestCLIRevokeOwner(t *testing.T) {
	cliEnvironment(t)
	db := "--database=sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	ids := cliKeys(t, db, []string{"--owner", "acme"}, []string{"--owner", "acme", "--not-before", "1h"}, []string{"--owner", "globex"}, nil)

	out, _, err := runCLI(t, "revoke", db, "--owner", "acme")
	if err != nil || strings.Count(out, "Revoked key ") != 2 || !strings.Contains(out, ids[0]) || !strings.Contains(out, ids[1]) ||
		!strings.HasSuffix(out, "Revoked 2 keys of owner acme.\n") {
		t.Fatalf("revoke --owner acme: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "revoke", db, "--owner", "acme")
	if err != nil || !strings.Contains(out, "nothing revoked") {
		t.Errorf("revoke --owner acme again: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "revoke", db, "--owner", "acme", "--json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("revoke --owner acme --json with nothing to revoke: %v\n%s", err, out)
	}
	// An owner with no key at all is most likely misspelled: an error,
	// not "nothing revoked".
	for _, args := range [][]string{{"revoke", db, "--owner", "Acme"}, {"revoke", db, "--owner", "acme-corp", "--json"}} {
		if out, _, err := runCLI(t, args...); err == nil || !strings.Contains(err.Error(), "no key of owner") || !strings.Contains(err.Error(), "exactly") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	out, _, err = runCLI(t, "revoke", db, "--owner", "globex", "--json")
	var revoked []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err != nil || json.Unmarshal([]byte(out), &revoked) != nil || len(revoked) != 1 || revoked[0].ID != ids[2] || revoked[0].Status != "revoked" {
		t.Errorf("revoke --owner globex --json: %v\n%s", err, out)
	}
	if got, _ := cliList(t, db, "--status", "revoked"); !reflect.DeepEqual(got, ids[:3]) {
		t.Errorf("revoked keys: %v, want %v", got, ids[:3])
	}
	if got, _ := cliList(t, db); !reflect.DeepEqual(got, ids[3:]) {
		t.Errorf("keys that work: %v, want the one without an owner, %v", got, ids[3:])
	}
}
