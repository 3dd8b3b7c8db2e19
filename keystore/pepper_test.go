package keystore

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestPepperFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "keys.db.pepper")
	// Racing creators must all end up with one pepper.
	peppers := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range peppers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := LoadOrCreatePepperFile(path)
			if err != nil {
				t.Error(err)
			}
			peppers[i] = p
		}()
	}
	wg.Wait()
	for _, p := range peppers[1:] {
		if string(p) != string(peppers[0]) {
			t.Fatal("concurrent creators got different peppers")
		}
	}
	if len(peppers[0]) < MinPepperLen {
		t.Fatalf("generated pepper is %d bytes", len(peppers[0]))
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("pepper file mode %v, want 0600", info.Mode().Perm())
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	again, err := LoadOrCreatePepperFile(path)
	if err != nil || string(again) != string(peppers[0]) {
		t.Fatalf("reloading the pepper: %v", err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreatePepperFile(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable pepper file was accepted: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("short\n"), 0o600)
	if _, err := LoadOrCreatePepperFile(path); err == nil {
		t.Fatal("a short pepper file was accepted")
	}
}
