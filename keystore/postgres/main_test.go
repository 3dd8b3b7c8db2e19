package postgres

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: closed
// stores and ended watches must stop everything they started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
