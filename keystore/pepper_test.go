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

// TestPepperFileSystemdCredential: a systemd credential shows its ACL as
// group bits (mode 0440); it is accepted directly in the service's
// $CREDENTIALS_DIRECTORY, and nowhere else, and never when others may
// read it.
func TestPepperFileSystemdCredential(t *testing.T) {
	creds := t.TempDir()
	pepper := "5d1c9e7a3f0b26e84c9a1d7f3b5e08c62a4f9d1e7b3c50a86e2d4f9b1c7a3e05"
	write := func(dir, name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(pepper+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cred := write(creds, "pepper", 0o440)
	elsewhere := write(t.TempDir(), "pepper", 0o440)
	nested := filepath.Join(creds, "sub")
	if err := os.Mkdir(nested, 0o700); err != nil {
		t.Fatal(err)
	}
	deeper := write(nested, "pepper", 0o440)
	public := write(creds, "public", 0o444)

	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := ReadPepperFile(cred); err == nil {
		t.Fatal("a group-readable pepper file was accepted without a credentials directory")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	if p, err := ReadPepperFile(cred); err != nil || string(p) != pepper {
		t.Fatalf("the systemd credential: %v", err)
	}
	for name, path := range map[string]string{"outside the directory": elsewhere, "in a subdirectory": deeper, "readable by others": public} {
		if _, err := ReadPepperFile(path); err == nil || !strings.Contains(err.Error(), "readable by other users") {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "relative/dir")
	if _, err := ReadPepperFile(cred); err == nil {
		t.Error("a relative CREDENTIALS_DIRECTORY was trusted")
	}
}
