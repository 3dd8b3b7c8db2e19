package keystore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DSN kinds accepted by Open.
const (
	schemeSQLite = "sqlite:"
)

// ValidateDSN checks the form of a DSN without connecting to anything, so
// that callers can reject a mistyped one before acting on it.
func ValidateDSN(dsn string) error {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return nil
	case IsSQLite(dsn):
		path := SQLitePath(dsn)
		if path == "" {
			return errors.New("sqlite: DSN has no file path (use sqlite:/path/to/keys.db)")
		}
		if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
			return fmt.Errorf("sqlite path %q must be a plain file path without '?', '#' or 'file:'", path)
		}
		if rest := strings.TrimPrefix(dsn, schemeSQLite); strings.HasPrefix(rest, "//") && !strings.HasPrefix(rest, "///") {
			return fmt.Errorf("sqlite DSN %q names the relative path %q: write sqlite:/absolute/path (or sqlite:///absolute/path)", dsn, path)
		}
		if strings.HasPrefix(path, "~") {
			return fmt.Errorf("sqlite path %q: only ~/ (your home directory) is expanded, not ~user; use an absolute path", path)
		}
		return nil
	case dsn == "":
		return errors.New("no database configured")
	default:
		return unsupportedDSN(dsn)
	}
}

// unsupportedDSN explains why dsn is refused without repeating it: a
// mistyped setting may hold a password in a form no redaction knows, or
// another secret altogether (a pepper put in the wrong place).
func unsupportedDSN(dsn string) error {
	if scheme, _, ok := strings.Cut(dsn, ":"); ok && len(scheme) <= 16 && isURLScheme(scheme) {
		return fmt.Errorf("unsupported database scheme %q: use postgres://… or sqlite:PATH", scheme)
	}
	if strings.Contains(dsn, "=") {
		return errors.New("unsupported database: key=value connection strings are not supported; " +
			"use a postgres:// URL (or sqlite:PATH)")
	}
	return errors.New("unsupported database: use postgres://… or sqlite:PATH")
}

// isURLScheme reports whether s is a URL scheme (RFC 3986, section 3.1).
func isURLScheme(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// IsSQLite reports whether dsn names an embedded SQLite store.
func IsSQLite(dsn string) bool { return strings.HasPrefix(dsn, schemeSQLite) }

// SQLitePath returns the file path of a sqlite: DSN.
func SQLitePath(dsn string) string {
	p := strings.TrimPrefix(dsn, schemeSQLite)
	if strings.HasPrefix(p, "//") {
		p = p[2:]
	}
	// "~/" is the user's home directory, as a shell would have it; a
	// directory literally named "~" is never meant.
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[2:])
		}
	}
	return p
}

// CheckStoreDir returns a warning, or "", about the directory of the
// embedded store dsn names: Open creates it with mode 0700, but an existing
// one keeps whatever mode it has. The store and pepper files in it are
// private either way; a directory others can write lets them replace or
// delete those files, one they can read lets them see what is there. Other
// DSNs, and a directory that does not exist yet, give "". The store
// package has no logger; callers log or print the warning.
func CheckStoreDir(dsn string) (warning string) {
	if !IsSQLite(dsn) || SQLitePath(dsn) == "" {
		return ""
	}
	dir := filepath.Dir(SQLitePath(dsn))
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		return ""
	}
	// The files are 0600; a directory others can only read (a home
	// directory, typically) shows their names, which is no secret. One
	// they can write lets them replace or delete the files.
	if perm := info.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Sprintf("key store directory %s is writable by other users (mode %#o): they can replace or delete "+
			"the key store and its pepper file; run: chmod 700 %s", dir, perm, dir)
	}
	return ""
}
