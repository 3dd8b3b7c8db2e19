package keystore

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// PepperFileFor returns where the generated pepper of an embedded store
// lives: beside the database file.
func PepperFileFor(dbPath string) string { return dbPath + ".pepper" }

// LoadOrCreatePepperFile returns the pepper kept in path, creating the file
// with a fresh random pepper (32 bytes, hex encoded) and mode 0600 if it
// does not exist. Two processes racing to create it end up with the same
// pepper: the file appears atomically (link of a complete temporary file),
// and the loser reads the winner's.
func LoadOrCreatePepperFile(path string) ([]byte, error) {
	p, err := readPepperFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return p, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating directory for pepper file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generating pepper: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pepper-*")
	if err != nil {
		return nil, fmt.Errorf("writing pepper file: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file with mode 0600.
	_, werr := tmp.WriteString(hex.EncodeToString(raw) + "\n")
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return nil, fmt.Errorf("writing pepper file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("writing pepper file: %w", err)
	}
	return readPepperFile(path)
}

func readPepperFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("pepper file %s is readable by other users (mode %v); run: chmod 600 %s", path, info.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading pepper file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < MinPepperLen {
		return nil, fmt.Errorf("pepper file %s holds fewer than %d bytes", path, MinPepperLen)
	}
	return b, nil
}
