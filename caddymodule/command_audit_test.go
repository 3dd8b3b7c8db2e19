package caddymodule

import (
	"database/sql"
	"encoding/json"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestCLIAudit(t *testing.T) {
	cliEnvironment(t)
	path := filepath.Join(t.TempDir(), "keys.db")
	db := "--database=sqlite:" + path
	create := func(args ...string) string {
		t.Helper()
		out, errOut, err := runCLI(t, append([]string{"create", db, "--json"}, args...)...)
		if err != nil {
			t.Fatalf("create: %v\n%s", err, errOut)
		}
		var k struct{ ID string }
		if err := json.Unmarshal([]byte(out), &k); err != nil {
			t.Fatal(err)
		}
		return k.ID
	}
	a := create("--name", "a", "--owner", "acme", "--actor", "ops:alice")
	b := create("--name", "b", "--owner", "globex")
	if _, errOut, err := runCLI(t, "revoke", a, db); err != nil {
		t.Fatalf("revoke: %v\n%s", err, errOut)
	}
	me := "cli:"
	if u, err := user.Current(); err == nil {
		me += u.Username
	}

	// The table: one row per change, newest last, with what changed.
	out, _, err := runCLI(t, "audit", db)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SEQ") {
		t.Fatalf("audit:\n%s", out)
	}
	for i, want := range [][]string{
		{"1 ", "ops:alice", "create", a, "acme", "new key"},
		{"2 ", me, "create", b, "globex", "new key"},
		{"3 ", me, "revoke", a, "acme", "revoked_at"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("audit row %d lacks %q: %s", i+1, w, lines[i+1])
			}
		}
	}

	// --json: states as objects, never a digest; filters.
	out, _, err = runCLI(t, "audit", db, "--key", a, "--json")
	var events []struct {
		Seq    int64           `json:"seq"`
		Actor  string          `json:"actor"`
		Action string          `json:"action"`
		KeyID  string          `json:"key_id"`
		Before json.RawMessage `json:"before"`
		After  struct {
			ID        string    `json:"id"`
			Name      string    `json:"name"`
			RevokedAt time.Time `json:"revoked_at"`
		} `json:"after"`
		Hash string `json:"hash"`
	}
	if err != nil || json.Unmarshal([]byte(out), &events) != nil || len(events) != 2 {
		t.Fatalf("audit --key --json: %v\n%s", err, out)
	}
	if events[0].Seq != 1 || string(events[0].Before) != "null" || events[0].After.Name != "a" ||
		events[1].Seq != 3 || events[1].After.RevokedAt.IsZero() || len(events[1].Hash) != 64 {
		t.Errorf("audit --key --json:\n%s", out)
	}
	if strings.Contains(strings.ToLower(out), "digest") {
		t.Errorf("audit --json shows a digest:\n%s", out)
	}
	if out, _, _ := runCLI(t, "audit", db, "--owner", "globex", "--json"); strings.Count(out, `"seq"`) != 1 {
		t.Errorf("audit --owner globex:\n%s", out)
	}
	if out, _, _ := runCLI(t, "audit", db, "--since", "1h", "--json"); strings.Count(out, `"seq"`) != 3 {
		t.Errorf("audit --since 1h:\n%s", out)
	}
	if out, errOut, _ := runCLI(t, "audit", db, "--since", "2999-01-01"); !strings.Contains(errOut, "No audit events") || strings.Count(out, "\n") != 1 {
		t.Errorf("audit --since in the future: %s\n%s", out, errOut)
	}

	// --verify prints the head; --head checks one recorded earlier.
	out, _, err = runCLI(t, "audit", db, "--verify")
	head := regexp.MustCompile(`head (3:[0-9a-f]{64})`).FindStringSubmatch(out)
	if err != nil || head == nil || !strings.Contains(out, "3 events") {
		t.Fatalf("audit --verify: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, "audit", db, "--verify", "--head", head[1]); err != nil || !strings.Contains(out, "recorded earlier") {
		t.Fatalf("audit --verify --head: %v\n%s", err, out)
	}
	var verified struct {
		OK     bool   `json:"ok"`
		Events int64  `json:"events"`
		Head   string `json:"head"`
	}
	if out, _, err := runCLI(t, "audit", db, "--verify", "--json"); err != nil || json.Unmarshal([]byte(out), &verified) != nil ||
		!verified.OK || verified.Events != 3 || verified.Head != head[1] {
		t.Fatalf("audit --verify --json: %v\n%s", err, out)
	}

	// The newest event removed behind Keygate's back: the chain still
	// holds on its own, not against the head.
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec("DELETE FROM keygate_audit WHERE seq = 3"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "audit", db, "--verify"); err != nil {
		t.Fatalf("a chain cut at its end verifies on its own, but: %v", err)
	}
	_, _, err = runCLI(t, "audit", db, "--verify", "--head", head[1])
	if err == nil || !strings.Contains(err.Error(), "event 3") || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("audit --verify --head after the newest event was removed: %v", err)
	}
	// An edited event is named, in text and JSON.
	if _, err := raw.Exec("UPDATE keygate_audit SET actor = 'cli:mallory' WHERE seq = 1"); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCLI(t, "audit", db, "--verify")
	if err == nil || !strings.Contains(err.Error(), "broken at event 1") || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("audit --verify after an edit: %v", err)
	}
	var broken struct {
		OK       bool   `json:"ok"`
		BrokenAt int64  `json:"broken_at"`
		Reason   string `json:"reason"`
	}
	out, _, err = runCLI(t, "audit", db, "--verify", "--json")
	if err == nil || json.Unmarshal([]byte(out), &broken) != nil || broken.OK || broken.BrokenAt != 1 || !strings.Contains(broken.Reason, "altered") {
		t.Fatalf("audit --verify --json after an edit: %v\n%s", err, out)
	}

	// Bad input.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "--verify", "--key", a}, "whole chain"},
		{[]string{"audit", "--verify", "--since", "1h"}, "whole chain"},
		{[]string{"audit", "--head", head[1]}, "with --verify"},
		{[]string{"audit", "--verify", "--head", "3"}, "SEQ:HASH"},
		{[]string{"audit", "--verify", "--head", "3:abc"}, "hex digits"},
		{[]string{"audit", "--since", "yesterday"}, "--since"},
		{[]string{"audit", "--since", "-1h"}, "positive"},
		{[]string{"audit", "--key", "nope"}, "--key"},
		{[]string{"create", "--name", "x", "--actor", ""}, "--actor"},
		{[]string{"create", "--name", "x", "--actor", "a\nb"}, "control character"},
		{[]string{"revoke", b, "--actor", strings.Repeat("x", 201)}, "too long"},
	} {
		_, _, err := runCLI(t, append(c.args, db)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want an error with %q", c.args, err, c.want)
		}
	}
	// Refused changes recorded nothing, and b is still active.
	if out, _, _ := runCLI(t, "audit", db, "--json"); strings.Count(out, `"seq"`) != 2 {
		t.Errorf("events after refused changes:\n%s", out)
	}
}
