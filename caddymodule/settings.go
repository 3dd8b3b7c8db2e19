package caddymodule

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/keystore"
)

// The environment variables that say where the key store is and what its
// pepper is. The api_key directive (where it does not set them itself)
// and the CLI read them the same way, through storeLocation and
// storePepper, so that both find the same store with the same pepper.
const (
	envDatabase   = "KEYGATE_DATABASE"
	envPepper     = "KEYGATE_PEPPER"
	envPepperFile = "KEYGATE_PEPPER_FILE"
	envPrefix     = "KEYGATE_PREFIX"
)

// storeLocation returns the key store's DSN: configured (the directive's
// database, the CLI's --database) if set, else KEYGATE_DATABASE, else the
// embedded store under Caddy's data directory; placeholders replaced and
// the form checked. configuredAs names the setting in errors.
func storeLocation(configured, configuredAs string) (string, error) {
	from := configuredAs
	if configured == "" {
		configured, from = os.Getenv(envDatabase), envDatabase
	}
	dsn, err := caddy.NewReplacer().ReplaceOrErr(configured, true, true)
	if err != nil {
		return "", fmt.Errorf("%s: %v (is the environment variable or file it names set?)", from, err)
	}
	if dsn == "" {
		dsn = DefaultDatabase()
	}
	if err := keystore.ValidateDSN(dsn); err != nil {
		return "", fmt.Errorf("%s: %v", from, err)
	}
	if keystore.IsSQLite(dsn) {
		// One spelling for one file (~ expanded, relative paths made
		// absolute), in every log line, message and pool key.
		abs, err := filepath.Abs(keystore.SQLitePath(dsn))
		if err != nil {
			return "", fmt.Errorf("%s: %v", from, err)
		}
		dsn = "sqlite:" + abs
	}
	return dsn, nil
}

// storePepper returns the pepper for the store dsn: literal (the
// directive's pepper, the CLI's --pepper; placeholders allowed) or the
// content of file (the CLI's --pepper-file) if either is set, else
// KEYGATE_PEPPER_FILE or KEYGATE_PEPPER, else, for the embedded store, the
// pepper file generated beside it (with create; without, a pepper file
// that does not exist yet gives a nil pepper). Two ways at once are an
// error.
func storePepper(literal, literalAs, file, fileAs, dsn string, create bool) ([]byte, error) {
	if literal == "" && file == "" {
		literal, literalAs = os.Getenv(envPepper), envPepper
		file, fileAs = os.Getenv(envPepperFile), envPepperFile
	}
	switch {
	case literal != "" && file != "":
		return nil, fmt.Errorf("%s and %s are both set: give the pepper one way only", literalAs, fileAs)
	case file != "":
		// Read as it is: no placeholders in a secret.
		p, err := keystore.ReadPepperFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", fileAs, err)
		}
		return p, nil
	}
	if literal == "" && !create && keystore.IsSQLite(dsn) {
		p, err := keystore.ReadPepperFile(keystore.PepperFileFor(keystore.SQLitePath(dsn)))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("pepper: %v", err)
		}
		return p, nil
	}
	return resolvePepper(caddy.NewReplacer(), literal, dsn)
}

// caddyValidating reports whether this process is `caddy validate`, which
// provisions every module to check a configuration that will not run.
// Caddy tells modules no such thing, hence its command line.
func caddyValidating() bool {
	return len(os.Args) > 1 && os.Args[1] == "validate"
}

// newEmbeddedStore reports whether dsn names an embedded store whose file
// does not exist yet: opening it will create a new, empty store.
func newEmbeddedStore(dsn string) (bool, error) {
	if !keystore.IsSQLite(dsn) {
		return false, nil
	}
	_, err := os.Stat(keystore.SQLitePath(dsn))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return false, err
}

// pepperRotation is the setting of a pepper rotation: the previous
// peppers and the next one, as configured (placeholders allowed).
type pepperRotation struct {
	previous []string
	next     string
	as       string // the settings' names in errors: "previous_peppers" or "keygate previous_peppers"
}

func (h *Handler) pepperRotation() pepperRotation {
	return pepperRotation{h.PreviousPeppers, h.NextPepper, ""}
}

func (a *App) pepperRotation() pepperRotation {
	return pepperRotation{a.PreviousPeppers, a.NextPepper, "keygate "}
}

func (r pepperRotation) given() bool { return len(r.previous) > 0 || r.next != "" }

// peppers resolves the rotation's peppers and builds the hashers around
// current.
func (r pepperRotation) peppers(current []byte) (keystore.Peppers, error) {
	var previous [][]byte
	for _, v := range r.previous {
		p, err := resolveOtherPepper(v, r.as+"previous_peppers")
		if err != nil {
			return keystore.Peppers{}, err
		}
		previous = append(previous, p)
	}
	var next []byte
	if r.next != "" {
		var err error
		if next, err = resolveOtherPepper(r.next, r.as+"next_pepper"); err != nil {
			return keystore.Peppers{}, err
		}
	}
	p, err := keystore.NewPeppers(current, previous, next)
	if err != nil {
		return keystore.Peppers{}, fmt.Errorf("%s: %w", strings.TrimSpace(r.as+"pepper"), err)
	}
	return p, nil
}

// resolveOtherPepper resolves a previous or next pepper, configured as
// the pepper is (a {file.PATH}, {env.NAME} or the value), named as in
// errors.
func resolveOtherPepper(configured, as string) ([]byte, error) {
	if strings.TrimSpace(configured) == "" {
		return nil, fmt.Errorf("%s: a pepper is empty", as)
	}
	// With a value set, resolvePepper neither reads nor creates the
	// embedded store's pepper file.
	p, err := resolvePepper(caddy.NewReplacer(), configured, "")
	if err != nil {
		return nil, fmt.Errorf("%s: %v", as, err)
	}
	return p, nil
}
