package caddymodule

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestCLIScanStdin: scan reads standard input without a path, and
// --offline reports without a store; flag conflicts are refused.
func TestCLIScanStdin(t *testing.T) {
	cliEnvironment(t)
	f, _ := keystore.NewFormat("acme")
	key, id, _ := f.Generate()
	out, errOut, err := runCLIStdin(t, "log line\nAuthorization: Bearer "+key+"\n", "scan", "--offline")
	if err != nil || !strings.Contains(out, "-:2") || !strings.Contains(out, id) || !strings.Contains(out, "acme") || !strings.Contains(errOut, "1 keys found") {
		t.Fatalf("scan of stdin: %v\n%s\n%s", err, out, errOut)
	}
	if strings.Contains(out+errOut, key) {
		t.Fatal("scan printed the key")
	}
	if _, _, err := runCLI(t, "scan", "--offline", "--revoke"); err == nil || !strings.Contains(err.Error(), "--revoke needs the key store") {
		t.Fatalf("--offline --revoke: %v", err)
	}
}
