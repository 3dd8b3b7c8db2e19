package caddymodule

// The key store backends that gateways and the CLI can open:
// keystore.Open finds each by the form of its DSN.
import (
	_ "github.com/keygate/keygate/keystore/postgres"
	_ "github.com/keygate/keygate/keystore/sqlite"
)
