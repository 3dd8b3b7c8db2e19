package tests

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	a := sb.createKey("alpha", "--owner", "acme", "--scopes", "orders:read,orders:write", "--metadata", "team=billing")
	b := sb.createKey("beta")

	list := sb.mustCLI("list")
	for _, want := range []string{"ID", "NAME", "STATUS", a.ID, "alpha", "acme", b.ID, "beta", "active"} {
		if !strings.Contains(list.stdout, want) {
			t.Errorf("list lacks %q:\n%s", want, list.stdout)
		}
	}
	if got := listIDs(t, sb, "list", "--json"); strings.Join(got, ",") != a.ID+","+b.ID {
		t.Errorf("list --json ids %v, want [%s %s]", got, a.ID, b.ID)
	}

	show := sb.mustCLI("show", a.ID)
	for _, want := range []string{a.ID, "alpha", "acme", "orders:read", "team", "billing", a.Hint} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, show.stdout)
		}
	}
	var shown issuedKey
	if err := json.Unmarshal([]byte(sb.mustCLI("show", a.ID, "--json").stdout), &shown); err != nil {
		t.Fatalf("show --json: %v", err)
	}
	if shown.ID != a.ID || shown.Owner != "acme" || shown.Key != "" {
		t.Errorf("show --json = %+v, want id %s, owner acme and no key", shown, a.ID)
	}

	if res := sb.mustCLI("revoke", b.ID); !strings.Contains(res.stdout, "Revoked key "+b.ID) {
		t.Errorf("revoke: %s", res)
	}
	if res := sb.mustCLI("revoke", b.ID); !strings.Contains(res.stdout, "already revoked") {
		t.Errorf("second revoke should say the key was already revoked: %s", res)
	}
	if got := listIDs(t, sb, "list", "--json"); strings.Join(got, ",") != a.ID {
		t.Errorf("list --json after revoke: ids %v, want [%s]", got, a.ID)
	}
	if got := listIDs(t, sb, "list", "--all", "--json"); strings.Join(got, ",") != a.ID+","+b.ID {
		t.Errorf("list --all --json: ids %v, want [%s %s]", got, a.ID, b.ID)
	}
	if res := sb.mustCLI("migrate"); !strings.Contains(res.stdout, "up to date") {
		t.Errorf("migrate: %s", res)
	}

	bad := []struct {
		args []string
		want string // in the error output
	}{
		{[]string{"frobnicate"}, "unknown subcommand"},
		{[]string{"create"}, "--name is required"},
		{[]string{"create", "--name", "x", "--expires", "soon"}, "--expires"},
		{[]string{"create", "--name", "x", "--expires", "-5m"}, "positive"},
		{[]string{"create", "--name", "x", "--expires", "2001-01-01"}, "in the past"},
		{[]string{"create", "--name", "x", "--metadata", "novalue"}, "key=value"},
		{[]string{"create", "--name", "x", "--scopes", "bad scope!"}, "scope"},
		{[]string{"show", "not-an-id"}, "not a key id"},
		{[]string{"revoke", "short"}, "not a key id"},
		{[]string{"show", a.Hint}, "not a key id"},
		{[]string{"show", "AAAAAAAAAAAA"}, "no key with id"},
		{[]string{"revoke", "AAAAAAAAAAAA"}, "no key with id"},
		{[]string{"show"}, "arg"},
		{[]string{"list", "--limit", "-1"}, "--limit"},
		{[]string{"list", "--database", "mysql://user:hunter2@db/keys"}, "unsupported database"},
	}
	// The group returns once its parallel cases are done.
	t.Run("bad input", func(t *testing.T) {
		for _, c := range bad {
			t.Run(strings.Join(c.args, " "), func(t *testing.T) {
				t.Parallel()
				res := sb.forTest(t).cli(c.args...)
				if res.code == 0 || !strings.Contains(res.stderr, c.want) {
					t.Errorf("want a failure mentioning %q, got %s", c.want, res)
				}
				if strings.Contains(res.stdout+res.stderr, "hunter2") {
					t.Errorf("the error shows a database password: %s", res)
				}
			})
		}
		t.Run("revoke KEY", func(t *testing.T) {
			t.Parallel()
			// An id argument that is really a key is refused without
			// echoing it.
			res := sb.forTest(t).cli("revoke", a.Key)
			if res.code == 0 || !strings.Contains(res.stderr, "looks like a key") || strings.Contains(res.stdout+res.stderr, a.Key) {
				t.Errorf("want a failure that says it looks like a key without repeating it, got %s", res)
			}
		})
	})
	if got := listIDs(t, sb, "list", "--all", "--json"); len(got) != 2 {
		t.Errorf("failed commands changed the store: %v", got)
	}
}

// listIDs runs a list command with --json and returns the ids in order.
func listIDs(t *testing.T, sb *sandbox, args ...string) []string {
	t.Helper()
	res := sb.mustCLI(args...)
	var keys []issuedKey
	if err := json.Unmarshal([]byte(res.stdout), &keys); err != nil {
		t.Fatalf("%v: %s", err, res)
	}
	var ids []string
	for _, k := range keys {
		if k.Key != "" {
			t.Errorf("list printed a key: %s", res)
		}
		ids = append(ids, k.ID)
	}
	return ids
}
