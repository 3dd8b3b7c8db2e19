package tests

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// verifyResult is what `audit --verify --json` prints.
type verifyResult struct {
	OK       bool   `json:"ok"`
	Events   int64  `json:"events"`
	Head     string `json:"head"`
	BrokenAt int64  `json:"broken_at"`
	Reason   string `json:"reason"`
}

func (sb *sandbox) verifyAudit(args ...string) (verifyResult, cliResult) {
	sb.t.Helper()
	res := sb.cli(append([]string{"audit", "--verify", "--json"}, args...)...)
	var v verifyResult
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil {
		sb.t.Fatalf("audit --verify --json printed no result: %v\n%s", err, res)
	}
	return v, res
}

// TestAuditTrail: CLI processes changing keys at the same time build one
// valid chain; the gateway logs its head; a verify against that logged
// head finds events removed from the end, and an edit in the middle is
// named.
func TestAuditTrail(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		sb.createKey("first") // creates the store before the writers race
		const writers, each = 2, 5
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					res := sb.cli("create", "--name", fmt.Sprint("w", w, "-", i), "--actor", fmt.Sprint("writer-", w), "--json")
					var k issuedKey
					if res.code != 0 || json.Unmarshal([]byte(res.stdout), &k) != nil {
						t.Errorf("writer %d: %s", w, res)
						return
					}
					if i%2 == 0 {
						if res := sb.cli("revoke", k.ID, "--actor", fmt.Sprint("writer-", w)); res.code != 0 {
							t.Errorf("writer %d: %s", w, res)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		want := int64(1 + writers*(each+(each+1)/2))
		v, res := sb.verifyAudit()
		if res.code != 0 || !v.OK || v.Events != want {
			t.Fatalf("after concurrent writers: %s; want %d events", res, want)
		}
		var listed []struct {
			Actor string `json:"actor"`
		}
		if err := json.Unmarshal([]byte(sb.mustCLI("audit", "--json").stdout), &listed); err != nil || int64(len(listed)) != want {
			t.Fatalf("audit --json: %v, %d events", err, len(listed))
		}
		byActor := map[string]int{}
		for _, e := range listed {
			byActor[e.Actor]++
		}
		if byActor["writer-0"] != each+(each+1)/2 || byActor["writer-1"] != each+(each+1)/2 {
			t.Errorf("events by actor: %v", byActor)
		}

		// The gateway logs the head at start: the operator's outside copy.
		up := newUpstream(t)
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, ""))
		var logged string
		headLine := regexp.MustCompile(`"msg":"audit chain head".*"head":"([0-9]+:[0-9a-f]{64})"`)
		if ok, _ := pollUntil(10*time.Second, 50*time.Millisecond, func() bool {
			m := headLine.FindStringSubmatch(g.log())
			if m != nil {
				logged = m[1]
			}
			return m != nil
		}); !ok {
			t.Fatalf("no audit chain head in the gateway's log:\n%s", g.log())
		}
		if logged != v.Head {
			t.Fatalf("logged head %s, verified head %s", logged, v.Head)
		}
		g.stop()

		// The newest two events removed: the rest still holds on its
		// own; against the logged head it does not.
		sb.sql(fmt.Sprintf("DELETE FROM keygate_audit WHERE seq > %d", want-2))
		if v, res := sb.verifyAudit(); res.code != 0 || !v.OK || v.Events != want-2 {
			t.Fatalf("a chain cut at its end verifies on its own, but: %s", res)
		}
		v, res = sb.verifyAudit("--head", logged)
		if res.code == 0 || v.OK || v.BrokenAt != want-1 || !strings.Contains(v.Reason, "removed") {
			t.Fatalf("verify against the logged head after the newest events were removed: %s", res)
		}
		// An edit in the middle is named.
		sb.sql("UPDATE keygate_audit SET owner = 'globex' WHERE seq = 3")
		v, res = sb.verifyAudit()
		if res.code == 0 || v.BrokenAt != 3 || !strings.Contains(v.Reason, "altered") {
			t.Fatalf("verify after an edit: %s", res)
		}
		text := sb.cli("audit", "--verify")
		if text.code == 0 || !strings.Contains(text.stderr, "audit chain broken at event 3") {
			t.Fatalf("audit --verify in text after an edit: %s", text)
		}
	})
}
