// Command genkey prints a well-formed key that no store knows, for load
// tests of the unknown-key path.
package main

import (
	"fmt"
	"os"

	"github.com/keygate/keygate/keystore"
)

func main() {
	f, err := keystore.NewFormat(os.Getenv("KEYGATE_PREFIX"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	key, _, err := f.Generate()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(key)
}
