package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIImport: flag errors are refused before any store is opened (none
// is created); stdin and --dry-run work; the summary says what happened.
func TestCLIImport(t *testing.T) {
	cliEnvironment(t)
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "keys.db")
	db := "--database=" + dsn
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"import", db}, "--file is required"},
		{[]string{"import", db, "--file", "x.csv", "--format", "xml"}, `--format must be csv or jsonl, not "xml"`},
		{[]string{"import", db, "--file", "x.csv", "--prefix", "bad-prefix"}, "--prefix:"},
		{[]string{"import", db, "--file", filepath.Join(dir, "missing.csv")}, "--file: open"},
	} {
		if _, _, err := runCLI(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "keys.db")); !os.IsNotExist(err) {
		t.Fatalf("a refused import created a store: %v", err)
	}

	file := filepath.Join(dir, "keys.jsonl")
	if err := os.WriteFile(file, []byte(`{"key":"legacy-key-0123456789abcdef","name":"a"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runCLI(t, "import", db, "--file", file, "--dry-run")
	if err != nil || !strings.Contains(errOut, "Dry run: 1 of 1 keys would be imported") || !strings.Contains(out, "would be imported") {
		t.Fatalf("dry run: %v\n%s\n%s", err, out, errOut)
	}
	out, _, err = runCLI(t, "list", db, "--json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("after a dry run: %v %s", err, out)
	}
	// The same file through stdin, as CSV would be: --format says JSON Lines.
	_, errOut, err = runCLIStdin(t, `{"key":"legacy-key-0123456789abcdef","name":"a"}`+"\n", "import", db, "--file", "-", "--format", "jsonl")
	if err != nil || !strings.Contains(errOut, "Imported 1 of 1 keys") {
		t.Fatalf("stdin import: %v\n%s", err, errOut)
	}
	out, _, err = runCLI(t, "list", db)
	if err != nil || !strings.Contains(out, "legacy:...") {
		t.Fatalf("list after import: %v\n%s", err, out)
	}
	if strings.Contains(out+errOut, "0123456789abcdef") {
		t.Fatal("the CLI printed the legacy key")
	}
}
