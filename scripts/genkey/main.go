// Command genkey prints well-formed keys that no store knows, for load
// tests of the unknown-key path: one, or as many as its argument says.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"

	"github.com/keygate/keygate/keystore"
)

func main() {
	f, err := keystore.NewFormat(os.Getenv("KEYGATE_PREFIX"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n := 1
	if len(os.Args) > 1 {
		if n, err = strconv.Atoi(os.Args[1]); err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "usage: genkey [count]")
			os.Exit(2)
		}
	}
	out := bufio.NewWriter(os.Stdout)
	for range n {
		key, _, err := f.Generate()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Fprintln(out, key)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
