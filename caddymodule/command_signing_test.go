package caddymodule

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLISigningKey(t *testing.T) {
	cliEnvironment(t)
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "keys.db")
	db := "--database=" + dsn
	if _, _, err := runCLI(t, "create", db, "--name", "k"); err != nil { // makes the store and its pepper
		t.Fatal(err)
	}
	if _, errOut, err := runCLI(t, "signing-key", "list", db); err != nil || !strings.Contains(errOut, "No signing key") {
		t.Fatalf("list of none: %q, %v", errOut, err)
	}
	// A rotation of none makes the first key, activated later.
	out, _, err := runCLI(t, "signing-key", "rotate", db, "--actor", "ops:alice", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var first struct {
		Key      signingKeyJSON  `json:"key"`
		Replaced *signingKeyJSON `json:"replaced"`
	}
	if err := json.Unmarshal([]byte(out), &first); err != nil || first.Replaced != nil || first.Key.KID == "" || strings.Contains(out, "private") {
		t.Fatalf("rotate: %s, %v", out, err)
	}
	out, _, err = runCLI(t, "signing-key", "rotate", db, "--activate-in", "0s")
	if err != nil || !strings.Contains(out, "Replaced key "+first.Key.KID) {
		t.Fatalf("second rotate: %s, %v", out, err)
	}
	out, _, err = runCLI(t, "signing-key", "list", db)
	if err != nil || !containsAll(out, first.Key.KID, "signing", "retiring") {
		t.Fatalf("list:\n%s%v", out, err)
	}
	if _, _, err := runCLI(t, "signing-key", "rotate", db, "--activate-in", "2h"); err == nil {
		t.Fatal("--activate-in 2h accepted")
	}
	wrong := "--pepper=6d39be979e1654be2cffe0f5d194279ff1d6fad5e2e47e1c890f44cee7a3ebec"
	if _, _, err := runCLI(t, "signing-key", "rotate", db, wrong); err == nil {
		t.Fatal("rotate with another pepper succeeded")
	}
	out, _, err = runCLI(t, "audit", db)
	if err != nil || strings.Count(out, "signing_key_rotate") != 2 || !strings.Contains(out, "ops:alice") {
		t.Fatalf("audit:\n%s%v", out, err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
