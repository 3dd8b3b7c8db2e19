package keystore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

// TestWatchBackoffResetsAfterHealthySession: only consecutive failures to
// establish a watch slow reconnection down; a watch that worked and was
// cut comes back after the minimum wait, however often it is cut.
func TestWatchBackoffResetsAfterHealthySession(t *testing.T) {
	r := storetest.NewRecorder()
	var starts []time.Time
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		keystore.WatchLoop(ctx, r, func(ctx context.Context, h keystore.ChangeHandler) error {
			mu.Lock()
			starts = append(starts, time.Now())
			n := len(starts)
			mu.Unlock()
			if n >= 8 {
				<-ctx.Done()
				return ctx.Err()
			}
			h.Healthy(true, nil) // established, then cut at once
			return errors.New("terminated")
		})
	}()
	r.WaitFor(t, "eight sessions", func(*storetest.Recorder) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(starts) >= 8
	})
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap > time.Second {
			t.Fatalf("session %d started %v after a healthy session was cut; the backoff grew", i, gap)
		}
	}
}
