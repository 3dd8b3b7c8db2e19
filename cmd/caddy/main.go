// Command caddy is a complete Caddy build (all standard modules) with
// Keygate's api_key handler and `caddy api-key` command added:
//
//	go build -o caddy ./cmd/caddy
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The standard Caddy modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// Keygate.
	_ "github.com/keygate/keygate"
)

func main() {
	caddycmd.Main()
}
