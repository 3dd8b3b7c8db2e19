package caddymodule

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestCLICreateWithLimits: create stores a key's own limits, show and
// --json display them, and every malformed limit is refused with a
// message naming the flag and the accepted forms, before the store is
// touched.
func TestCLICreateWithLimits(t *testing.T) {
	cliEnvironment(t)
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	db := "--database=" + dsn
	out, errOut, err := runCLI(t, "create", db, "--name", "metered", "--rate", "100/s", "--burst", "200",
		"--quota", "10000/month", "--uses", "1000", "--refill", "day", "--json")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	var created struct {
		ID     string          `json:"id"`
		Limits keystore.Limits `json:"limits"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatal(err)
	}
	want := keystore.Limits{Rate: "100/s", Burst: 200, Quota: "10000/month", Uses: 1000, Refill: "day"}
	if got := created.Limits; got.Rate != want.Rate || got.Burst != want.Burst || got.Quota != want.Quota || got.Uses != want.Uses || got.Refill != want.Refill {
		t.Errorf("create --json limits %+v, want %+v", got, want)
	}
	out, _, err = runCLI(t, "show", created.ID, db)
	if err != nil || !strings.Contains(out, "Limits:") || !strings.Contains(out, "rate 100/s burst 200, quota 10000/month, uses 1000 refilled each day") {
		t.Errorf("show: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "create", db, "--name", "plain", "--json")
	if err != nil || strings.Contains(out, "limits") {
		t.Errorf("a key without limits: %v\n%s", err, out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--rate", "100"}, "--rate: rate \"100\" must be N/s, N/m or N/h"},
		{[]string{"--rate", "100/d"}, "must be N/s, N/m or N/h"},
		{[]string{"--rate", ""}, "--rate needs a value"},
		{[]string{"--burst", "5"}, "--burst: a burst needs a rate"},
		{[]string{"--rate", "1/s", "--burst", "0"}, "--burst must be a positive whole number"},
		{[]string{"--rate", "1/s", "--burst", "2000000"}, "--burst: burst must be 1 to 1000000"},
		{[]string{"--quota", "100/week"}, "--quota: quota \"100/week\" must be N/day or N/month"},
		{[]string{"--quota", "0/day"}, "must be N/day or N/month"},
		{[]string{"--uses", "0"}, "--uses must be a positive whole number"},
		{[]string{"--uses", "-3"}, "--uses must be a positive whole number"},
		{[]string{"--uses", "many"}, "invalid argument \"many\" for \"--uses\""},
		{[]string{"--refill", "day"}, "--refill: a refill needs a number of uses"},
		{[]string{"--uses", "5", "--refill", "week"}, "--refill: refill \"week\" must be day or month"},
	} {
		args := append([]string{"create", db, "--name", "bad"}, c.args...)
		_, _, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %v: %v, want an error with %q", c.args, err, c.want)
		}
	}
	out, _, _ = runCLI(t, "list", db, "--json")
	var listed []keystore.Key
	if json.Unmarshal([]byte(out), &listed) != nil || len(listed) != 2 {
		t.Errorf("refused creates left keys behind: %s", out)
	}
}

// TestCLIOwnerLimits: `owner` shows, sets and clears the limits an
// owner's keys share, says when nothing changed, records the change in
// the audit trail, and refuses bad input before touching the store.
func TestCLIOwnerLimits(t *testing.T) {
	cliEnvironment(t)
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	db := "--database=" + dsn
	out, _, err := runCLI(t, "create", db, "--name", "a", "--owner", "acme", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(out), &created)

	if out, _, err := runCLI(t, "owner", "acme", db); err != nil || !strings.Contains(out, "Owner acme's keys share: -.") {
		t.Errorf("owner without limits: %v %q", err, out)
	}
	out, _, err = runCLI(t, "owner", "acme", db, "--rate", "1000/m", "--quota", "50000/month", "--actor", "ops:carol")
	if err != nil || !strings.Contains(out, "now share: rate 1000/m, quota 50000/month") {
		t.Fatalf("owner set: %v %q", err, out)
	}
	if out, _, err := runCLI(t, "owner", "acme", db, "--rate", "1000/m", "--quota", "50000/month"); err != nil || !strings.Contains(out, "already had these limits") {
		t.Errorf("owner set again: %v %q", err, out)
	}
	out, _, err = runCLI(t, "show", created.ID, db)
	if err != nil || !strings.Contains(out, "Owner's limits:") || !strings.Contains(out, "rate 1000/m, quota 50000/month (shared by the owner's keys)") {
		t.Errorf("show of the owner's key: %v\n%s", err, out)
	}
	out, _, err = runCLI(t, "owner", "acme", db, "--json")
	var shown struct {
		Owner  string          `json:"owner"`
		Limits keystore.Limits `json:"limits"`
	}
	if err != nil || json.Unmarshal([]byte(out), &shown) != nil || shown.Owner != "acme" || shown.Limits.Quota != "50000/month" {
		t.Errorf("owner --json: %v %s", err, out)
	}
	out, _, err = runCLI(t, "audit", db, "--owner", "acme")
	if err != nil || !strings.Contains(out, "owner_limits") || !strings.Contains(out, "ops:carol") {
		t.Errorf("audit of the owner: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, "owner", "acme", db, "--clear"); err != nil || !strings.Contains(out, "share no limits any more") {
		t.Errorf("owner --clear: %v %q", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"owner", "acme", db, "--rate", "fast"}, "--rate: rate \"fast\" must be N/s, N/m or N/h"},
		{[]string{"owner", "acme", db, "--quota", "5/week"}, "--quota: quota \"5/week\" must be N/day or N/month"},
		{[]string{"owner", "acme", db, "--burst", "5"}, "--burst: a burst needs a rate"},
		{[]string{"owner", "acme", db, "--rate", "1/s", "--clear"}, "--clear takes no --rate, --burst or --quota"},
		{[]string{"owner", "acme", db, "--rate", ""}, "--rate and --quota need a value"},
		{[]string{"owner", db}, "accepts 1 arg(s), received 0"},
		{[]string{"owner", "", db, "--rate", "1/s"}, "owner is required"},
	} {
		if _, _, err := runCLI(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.args, err, c.want)
		}
	}
}

// TestCLIUpdateAndDelete: update changes the fields named and nothing
// else, says when nothing changed, refuses contradictions and empty
// updates before touching the store; delete removes the record, and both
// are in the audit trail.
func TestCLIUpdateAndDelete(t *testing.T) {
	cliEnvironment(t)
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	db := "--database=" + dsn
	out, _, err := runCLI(t, "create", db, "--name", "a", "--owner", "acme", "--scopes", "read", "--metadata", "team=core", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	json.Unmarshal([]byte(out), &created)
	id := created.ID

	out, _, err = runCLI(t, "update", id, db, "--scopes", "read,write", "--quota", "100/day", "--metadata", "team=", "--metadata", "tier=gold", "--json", "--actor", "ops:dan")
	var updated struct {
		keystore.Key
		Changed bool `json:"changed"`
	}
	if err != nil || json.Unmarshal([]byte(out), &updated) != nil || !updated.Changed || strings.Join(updated.Scopes, ",") != "read,write" ||
		updated.Limits == nil || updated.Limits.Quota != "100/day" || updated.Metadata["team"] != "" || updated.Metadata["tier"] != "gold" || updated.Name != "a" {
		t.Fatalf("update --json: %v\n%s", err, out)
	}
	if out, _, err := runCLI(t, "update", id, db, "--name", "a"); err != nil || !strings.Contains(out, "nothing changed") {
		t.Errorf("an update that changes nothing: %v %q", err, out)
	}
	if out, _, err := runCLI(t, "update", id, db, "--no-limits", "--no-expiry"); err != nil || !strings.Contains(out, "Updated key") {
		t.Errorf("update --no-limits: %v %q", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"update", id, db}, "nothing to change"},
		{[]string{"update", id, db, "--expires", "2d", "--no-expiry"}, "--expires and --no-expiry contradict each other"},
		{[]string{"update", id, db, "--rate", "5/s", "--no-limits"}, "--no-limits takes no --rate"},
		{[]string{"update", id, db, "--quota", "5/week"}, "--quota: quota \"5/week\" must be N/day or N/month"},
		{[]string{"update", id, db, "--name", ""}, "name is required"},
		{[]string{"update", id, db, "--expires", "2020-01-01"}, "--expires 2020-01-01 is in the past"},
		{[]string{"update", id, db, "--scopes", "bad scope"}, "scope"},
		{[]string{"update", "kg_nonexistent", db, "--name", "x"}, ""},
		{[]string{"update", "AAAAAAAAAAAA", db, "--name", "x"}, "no key with id AAAAAAAAAAAA"},
	} {
		_, _, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error with %q", c.args, err, c.want)
		}
	}
	if out, _, err := runCLI(t, "delete", id, db, "--actor", "ops:erin"); err != nil || !strings.Contains(out, "Deleted key "+id) {
		t.Fatalf("delete: %v %q", err, out)
	}
	if _, _, err := runCLI(t, "show", id, db); err == nil || !strings.Contains(err.Error(), "no key with id") {
		t.Errorf("show after delete: %v", err)
	}
	out, _, err = runCLI(t, "audit", db, "--key", id)
	if err != nil || !strings.Contains(out, "update") || !strings.Contains(out, "ops:dan") || !strings.Contains(out, "delete") || !strings.Contains(out, "ops:erin") {
		t.Errorf("audit of the key: %v\n%s", err, out)
	}
	// The gateway refuses the deleted key like an unknown one.
	h := provision(t, &Handler{Database: dsn})
	checkProblem(t, serve(h, newRequest("/", bearer(created.Key))), 401, CodeInvalidKey)
}
