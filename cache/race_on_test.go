//go:build race

package cache

// raceEnabled: the race detector changes what allocates, so allocation
// counts mean nothing there; scripts/test.sh runs those checks without it.
const raceEnabled = true
