package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestPepperStatusCommand: pepper-status shows the keys on each pepper,
// registers the new pepper when given it, and --check fails until every
// working key is on the newest pepper.
func TestPepperStatusCommand(t *testing.T) {
	cliEnvironment(t)
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "keys.db")
	db := "--database=" + dsn
	oldFile := writeSecret(t, dir, "old", cliPepper, 0o600)
	newFile := writeSecret(t, dir, "new", cliOtherPepper, 0o600)
	var made []string
	for range 2 {
		out, errOut, err := runCLI(t, "create", db, "--pepper-file", oldFile, "--name", "k", "--json")
		if err != nil {
			t.Fatalf("create: %v\n%s", err, errOut)
		}
		var k struct{ Key string }
		if err := json.Unmarshal([]byte(out), &k); err != nil {
			t.Fatal(err)
		}
		made = append(made, k.Key)
	}
	out, errOut, err := runCLI(t, "pepper-status", db, "--pepper-file", oldFile)
	noSecrets(t, err, out, errOut)
	if err != nil || !strings.Contains(out, "current") || !strings.Contains(out, "(newest)") || !strings.Contains(out, "Every working key") {
		t.Fatalf("pepper-status before a rotation: %v\n%s%s", err, out, errOut)
	}
	rotation := []string{db, "--pepper-file", newFile, "--previous-pepper-file", oldFile}
	out, errOut, err = runCLI(t, append([]string{"pepper-status", "--check"}, rotation...)...)
	noSecrets(t, err, out, errOut)
	if !errors.Is(err, errKeysOnOlderPeppers) || !strings.Contains(out, "2 working keys are still hashed with an older pepper") {
		t.Fatalf("pepper-status --check with keys on the previous pepper: %v\n%s", err, out)
	}
	if _, errOut, err := runCLI(t, append([]string{"create", "--name", "new"}, rotation...)...); err != nil {
		t.Fatalf("create in a rotation: %v\n%s", err, errOut)
	}

	// Re-hash the old keys as a gateway does, then the check passes.
	p, err := keystore.NewPeppers([]byte(cliOtherPepper), [][]byte{[]byte(cliPepper)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var opts keystore.Options
	p.SetOptions(&opts)
	s, err := keystore.Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	format, _ := keystore.NewFormat("")
	for _, k := range made {
		parsed, err := format.Parse(k)
		if err != nil {
			t.Fatal(err)
		}
		rec, h, err := p.Lookup(context.Background(), s, parsed)
		if err != nil || h != p.Previous[0] {
			t.Fatalf("lookup before the re-hash: %v", err)
		}
		if moved, err := s.Rehash(context.Background(), rec.ID, rec.Digest, p.Current.Digest(parsed), p.Current.ID()); err != nil || !moved {
			t.Fatalf("Rehash: %v %v", moved, err)
		}
	}
	out, errOut, err = runCLI(t, append([]string{"pepper-status", "--check"}, rotation...)...)
	if err != nil || !strings.Contains(out, "Every working key is hashed with the newest pepper") {
		t.Fatalf("pepper-status --check after the re-hash: %v\n%s%s", err, out, errOut)
	}
	var uses []struct {
		ID, Here string
		Keys     int
		Newest   bool
	}
	out, _, err = runCLI(t, append([]string{"pepper-status", "--json"}, rotation...)...)
	if err := json.Unmarshal([]byte(out), &uses); err != nil || len(uses) != 2 || uses[0].Here != "previous" || uses[0].Keys != 0 ||
		uses[1].Here != "current" || uses[1].Keys != 3 || !uses[1].Newest || uses[1].ID != p.Current.ID() {
		t.Fatalf("pepper-status --json: %v %+v\n%s", err, uses, out)
	}

	// Bad input: rotation files without the pepper, a readable file, the
	// same pepper twice.
	readable := writeSecret(t, dir, "readable", cliOtherPepper, 0o644)
	for name, args := range map[string][]string{
		"previous without the pepper": {"pepper-status", db, "--previous-pepper-file", oldFile},
		"readable previous file":      {"pepper-status", db, "--pepper-file", oldFile, "--previous-pepper-file", readable},
		"missing next file":           {"pepper-status", db, "--pepper-file", oldFile, "--next-pepper-file", filepath.Join(dir, "nope")},
		"the same pepper twice":       {"pepper-status", db, "--pepper-file", oldFile, "--previous-pepper-file", oldFile},
	} {
		out, errOut, err := runCLI(t, args...)
		noSecrets(t, err, out, errOut)
		if err == nil {
			t.Errorf("%s: no error\n%s", name, out)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}
