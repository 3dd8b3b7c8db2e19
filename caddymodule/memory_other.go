//go:build !linux

package caddymodule

// totalMemory is unknown here: cache sizes are checked against
// maxCacheKeys only.
func totalMemory() uint64 { return 0 }
