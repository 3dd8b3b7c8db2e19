// Package testport hands out loopback TCP ports for tests that start
// servers in other processes (Caddy, PostgreSQL), which cannot be given a
// listener and must be told a port number.
//
// Ports come from below the kernel's ephemeral range (32768 and up on
// Linux), so that neither a load test's client connections nor their
// TIME_WAIT remains can take or crowd out a port a test was given, and
// each is handed out once per process. Each process starts at a random
// point of the range and checks that a port can be bound before handing
// it out, so parallel test processes rarely meet.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

const (
	first = 20000
	last  = 32000 // exclusive; below the default ephemeral range
)

var (
	mu   sync.Mutex
	next = first + rand.IntN(last-first)
	used = map[int]bool{}
)

// Free returns a loopback port that was free a moment ago and that no
// other caller in this process has been given.
func Free(t testing.TB) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range last - first {
		port := next
		if next++; next == last {
			next = first
		}
		if used[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		used[port] = true
		return port
	}
	t.Fatalf("no free port in %d-%d", first, last)
	return 0
}
