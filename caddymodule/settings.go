package caddymodule

import (
	"fmt"
	"os"

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
		return "", fmt.Errorf("%s: %v", from, err)
	}
	if dsn == "" {
		dsn = DefaultDatabase()
	}
	if err := keystore.ValidateDSN(dsn); err != nil {
		return "", fmt.Errorf("%s: %v", from, err)
	}
	return dsn, nil
}

// storePepper returns the pepper for the store dsn: literal (the
// directive's pepper, the CLI's --pepper; placeholders allowed) or the
// content of file (the CLI's --pepper-file) if either is set, else
// KEYGATE_PEPPER_FILE or KEYGATE_PEPPER, else, for the embedded store, the
// pepper file generated beside it. Two ways at once are an error.
func storePepper(literal, literalAs, file, fileAs, dsn string) ([]byte, error) {
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
	return resolvePepper(caddy.NewReplacer(), literal, dsn)
}
