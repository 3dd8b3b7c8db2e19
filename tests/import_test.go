package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLegacyImportThroughCaddy, on both stores: a legacy system's keys
// imported from CSV and JSON Lines work through a gateway with
// legacy_keys, unchanged, and only there; importing again changes
// nothing; a file with bad rows imports nothing and names each bad line
// without quoting a key; an imported key rotates into a Keygate key and
// the legacy one stops working; every import leaves its audit event, and
// the store never holds a legacy key.
func TestLegacyImportThroughCaddy(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		const legacyA = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
		const legacyB = "9f86d081884c7d659a2feaa0c55ad015"
		csvFile := filepath.Join(sb.dir, "keys.csv")
		writeFile(t, csvFile, "key,name,owner,scopes,expires_at,metadata.plan\n"+
			legacyA+",billing,acme,\"orders:read orders:write\",2099-01-01,gold\n")
		jsonlFile := filepath.Join(sb.dir, "keys.jsonl")
		writeFile(t, jsonlFile, `{"key":"`+legacyB+`","name":"reports","owner":"globex","scopes":["orders:read"]}`+"\n")

		res := sb.mustCLI("import", "--file", csvFile, "--json")
		var rows []struct {
			Line   int    `json:"line"`
			ID     string `json:"id"`
			Result string `json:"result"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &rows); err != nil || len(rows) != 1 || rows[0].Line != 2 || rows[0].Result != "imported" {
			t.Fatalf("import --json: %v\n%s", err, res)
		}
		idA := rows[0].ID
		if res := sb.mustCLI("import", "--file", jsonlFile); !strings.Contains(res.stderr, "Imported 1 of 1 keys") {
			t.Fatalf("JSON Lines import:\n%s", res)
		}
		// The same file again: nothing changes.
		if res := sb.mustCLI("import", "--file", csvFile); !strings.Contains(res.stderr, "Imported 0 of 1 keys") || !strings.Contains(res.stdout, "already there") {
			t.Fatalf("second import:\n%s", res)
		}
		// A file with bad rows: nothing imported, every bad line named.
		bad := filepath.Join(sb.dir, "bad.csv")
		writeFile(t, bad, "key,name\n"+
			"good-legacy-key-0000000000000001,fine\n"+
			"tooshort,short\n"+
			"good-legacy-key-0000000000000002,\n")
		res = sb.cli("import", "--file", bad)
		if res.code == 0 || !containsAll(res.stderr, "nothing imported: 2 bad row(s)", "line 3: not a usable legacy key", "line 4: name is required") ||
			strings.Contains(res.stderr, "tooshort") || strings.Contains(res.stderr, "good-legacy-key") {
			t.Fatalf("import of a bad file:\n%s", res)
		}
		if res := sb.mustCLI("list", "--json"); strings.Count(res.stdout, `"id"`) != 2 {
			t.Fatalf("after the bad import the store lists:\n%s", res.stdout)
		}

		up := newUpstream(t)
		strict := freePort(t)
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, "legacy_keys\n\t\tscopes orders:read")+
			siteBlock(strict, fmt.Sprintf("\tapi_key {\n\t\t%s\n\t}\n\treverse_proxy %s", sb.storeOptions(), up.hostPort())), strict)
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		for _, key := range []string{legacyA, legacyB} {
			r := bearer(t, g.url+"/", key)
			wantUpstream(t, "legacy key with legacy_keys", r)
			wantStatus(t, "legacy key without legacy_keys", bearer(t, fmt.Sprintf("http://127.0.0.1:%d/", strict), key), http.StatusUnauthorized)
		}
		// The key never reaches the upstream; its imported id does.
		reqs := up.requests()
		for _, rr := range reqs {
			if strings.Contains(rr.String(), legacyA) || strings.Contains(rr.String(), legacyB) {
				t.Fatalf("a legacy key reached the upstream:\n%s", rr)
			}
		}
		if got := reqs[0].Header.Get("X-Api-Key-Id"); got != idA {
			t.Errorf("upstream identity %q, want the imported id %s", got, idA)
		}

		// Rotation into a Keygate key: the new key works, the legacy one
		// is refused within the revocation bound.
		var rotated issuedKey
		res = sb.mustCLI("rotate", idA, "--grace", "0", "--json")
		if err := json.Unmarshal([]byte(res.stdout), &rotated); err != nil || !strings.HasPrefix(rotated.Key, "kg_") {
			t.Fatalf("rotate --json: %v\n%s", err, res)
		}
		wantUpstream(t, "the Keygate key replacing a legacy key", bearer(t, g.url+"/", rotated.Key))
		if ok, _ := pollUntil(10*time.Second, 20*time.Millisecond, func() bool {
			return bearer(t, g.url+"/", legacyA).status == http.StatusUnauthorized
		}); !ok {
			t.Fatal("the rotated legacy key still works after 10s")
		}

		if res := sb.mustCLI("audit", "--key", idA); !containsAll(res.stdout, "import", "rotate") {
			t.Errorf("audit of the imported key:\n%s", res.stdout)
		}
		if dump := sb.dump(g); strings.Contains(dump, legacyA) || strings.Contains(dump, legacyB) {
			t.Fatal("the store holds a legacy key")
		}
		if strings.Contains(g.log(), legacyA) || strings.Contains(g.log(), legacyB) {
			t.Fatal("the gateway logged a legacy key")
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
