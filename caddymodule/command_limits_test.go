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
