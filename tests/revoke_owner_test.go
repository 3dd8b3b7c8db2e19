package tests

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestRevokeOwnerReachesTheGateway: on both stores, `revoke --owner acme`
// makes a running gateway, with every key cached for an hour, refuse both
// of acme's keys within seconds while globex's key keeps working; the
// audit trail has a revoke event for each, `list --status revoked` lists
// them, and pages of one key (`--limit 1 --after`) walk every key once.
func TestRevokeOwnerReachesTheGateway(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		acme1 := sb.createKey("acme one", "--owner", "acme")
		acme2 := sb.createKey("acme two", "--owner", "acme")
		globex := sb.createKey("globex", "--owner", "globex")
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, "cache {\n\t\t\tttl 1h\n\t\t}"))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		for _, k := range []issuedKey{acme1, acme2, globex} {
			wantUpstream(t, "before the revocation ("+k.Name+")", bearer(t, g.url+"/", k.Key))
		}

		res := sb.mustCLI("revoke", "--owner", "acme")
		if !containsAll(res.stdout, acme1.ID, acme2.ID, "Revoked 2 keys of owner acme.") || strings.Contains(res.stdout, globex.ID) {
			t.Errorf("revoke --owner acme:\n%s", res)
		}
		for _, k := range []issuedKey{acme1, acme2} {
			ok, took := pollUntil(10*time.Second, 20*time.Millisecond, func() bool {
				return bearer(t, g.url+"/", k.Key).status == http.StatusUnauthorized
			})
			if !ok {
				t.Fatalf("the gateway still accepted %s's key %s 10s after revoke --owner", k.Owner, k.ID)
			}
			t.Logf("revocation of %s seen after %v", k.ID, took)
		}
		wantUpstream(t, "globex's key after acme's revocation", bearer(t, g.url+"/", globex.Key))

		var events []struct {
			Action string `json:"action"`
			KeyID  string `json:"key_id"`
		}
		res = sb.mustCLI("audit", "--owner", "acme", "--json")
		if err := json.Unmarshal([]byte(res.stdout), &events); err != nil {
			t.Fatalf("audit --json: %v\n%s", err, res)
		}
		revokes := map[string]int{}
		for _, e := range events {
			if e.Action == "revoke" {
				revokes[e.KeyID]++
			}
		}
		if !reflect.DeepEqual(revokes, map[string]int{acme1.ID: 1, acme2.ID: 1}) {
			t.Errorf("revoke events of acme's keys: %v\n%s", revokes, res.stdout)
		}
		if res := sb.mustCLI("revoke", "--owner", "acme"); !strings.Contains(res.stdout, "nothing revoked") {
			t.Errorf("revoke --owner acme again:\n%s", res)
		}

		if got := listIDs(t, sb, "list", "--owner", "acme", "--status", "revoked", "--json"); !reflect.DeepEqual(got, []string{acme1.ID, acme2.ID}) {
			t.Errorf("list --owner acme --status revoked: %v", got)
		}
		var walked []string
		args := []string{"--all", "--limit", "1"}
		for page := 0; page < 5; page++ {
			res := sb.mustCLI(append([]string{"list", "--json"}, args...)...)
			var keys []struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal([]byte(res.stdout), &keys); err != nil {
				t.Fatalf("a page of list --json is not a JSON array: %v\n%s", err, res)
			}
			if len(keys) == 0 {
				break
			}
			walked = append(walked, keys[0].ID)
			if want := "next page: --after " + keys[0].ID; !strings.Contains(res.stderr, want) {
				t.Fatalf("a full page does not say %q:\n%s", want, res)
			}
			args = []string{"--all", "--limit", "1", "--after", keys[0].ID}
		}
		if want := []string{acme1.ID, acme2.ID, globex.ID}; !reflect.DeepEqual(walked, want) {
			t.Errorf("pages of one key walked %v, want %v", walked, want)
		}
	})
}
