package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScanFindsLeakedKeys, on both stores: scan finds keys in a directory
// tree and on standard input by file:line, says which still work without
// printing a secret, fails while an active key is found, and --revoke
// revokes the active ones with the actor "scan".
func TestScanFindsLeakedKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		active := sb.createKey("leaked")
		old := sb.createKey("leaked, revoked already")
		sb.revoke(old.ID)
		broken := active.Key[:len(active.Key)-1] + "0"
		if broken == active.Key {
			broken = active.Key[:len(active.Key)-1] + "1"
		}
		dir := filepath.Join(sb.dir, "repo")
		if err := os.MkdirAll(filepath.Join(dir, "config"), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "config", "app.yaml"), "api:\n  token: "+active.Key+"\n")
		foreign := unknownKey(t) // well-formed, of another store
		writeFile(t, filepath.Join(dir, "notes.txt"), "old key "+old.Key+"\ntypo "+broken+"\nstaging: "+foreign+"\n")

		res := sb.cli("scan", dir, "--json")
		var found []struct {
			Location string `json:"location"`
			ID       string `json:"id"`
			Status   string `json:"status"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &found); err != nil || res.code != 1 || len(found) != 3 {
			t.Fatalf("scan: %v\n%s", err, res)
		}
		byID := map[string]string{}
		for _, f := range found {
			byID[f.ID] = f.Location + " " + f.Status
		}
		foreignID := strings.Split(strings.TrimPrefix(foreign, "kg_"), "_")[0]
		if byID[active.ID] != filepath.Join(dir, "config", "app.yaml")+":2 active" || byID[old.ID] != filepath.Join(dir, "notes.txt")+":1 revoked" ||
			byID[foreignID] != filepath.Join(dir, "notes.txt")+":3 unknown" {
			t.Fatalf("scan found %v", byID)
		}
		if strings.Contains(res.stdout+res.stderr, secretOf(active.Key)) || !strings.Contains(res.stderr, "1 of them are active") {
			t.Fatalf("scan output:\n%s", res)
		}

		res = sb.run("api-key", "scan", dir, "--revoke")
		if res.code != 0 || !strings.Contains(res.stdout, "revoked now") {
			t.Fatalf("scan --revoke:\n%s", res)
		}
		if res := sb.mustCLI("audit", "--key", active.ID, "--json"); !strings.Contains(res.stdout, `"actor": "scan"`) && !strings.Contains(res.stdout, `"actor":"scan"`) {
			t.Fatalf("the revocation's audit event:\n%s", res.stdout)
		}
		if res := sb.cli("scan", dir); res.code != 0 {
			t.Fatalf("a scan after --revoke still fails:\n%s", res)
		}
		// --offline needs no store and reports what it sees.
		if res := sb.cli("scan", "--offline", filepath.Join(dir, "config")); res.code != 0 || !strings.Contains(res.stdout, "unchecked") {
			t.Fatalf("scan --offline:\n%s", res)
		}
		if res := sb.cli("scan", filepath.Join(dir, "missing")); res.code == 0 || !strings.Contains(res.stderr, "no such file") {
			t.Fatalf("scan of a missing path:\n%s", res)
		}
	})
}
