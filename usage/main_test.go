package usage

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a closed Recorder leaves its goroutine.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
