// Package keygate is an API-key gateway for Caddy.
//
// Importing this package registers Keygate's Caddy modules (the api_key
// HTTP handler, its Caddyfile directive and the `caddy api-key` command),
// which is what `xcaddy build --with github.com/keygate/keygate` does. The
// code lives in the packages below:
//
//	keystore     key format, hashing, the store interfaces
//	             (backends in keystore/postgres and keystore/sqlite)
//	cache        the verification cache in front of a store
//	caddymodule  the Caddy glue
package keygate

import (
	// Register the Caddy modules.
	_ "github.com/keygate/keygate/caddymodule"
)
