package storetest

import (
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

func countBatch(deltas ...keystore.CountDelta) *keystore.CountBatch {
	b := &keystore.CountBatch{Deltas: deltas}
	rand.Read(b.ID[:])
	return b
}

// testCountersAddOnce: a batch adds its deltas and returns the totals; the
// same batch written again (an ambiguous commit retried) adds nothing and
// returns the same totals; periods and subjects are apart; old periods
// are pruned with usage, lifetime counters never.
func testCountersAddOnce(t *testing.T, kind Backend) {
	ctx := Context(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{})
	day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	life := time.Unix(0, 0)
	b := countBatch(
		keystore.CountDelta{Subject: "quota:AAAA", Start: day, N: 5},
		keystore.CountDelta{Subject: "uses:AAAA", Start: life, N: 5},
		keystore.CountDelta{Subject: "quota:AAAA", Start: day.AddDate(0, 0, -1), N: 2},
	)
	totals, err := s.AddCounts(ctx, b)
	if err != nil || len(totals) != 3 || totals[0] != 5 || totals[1] != 5 || totals[2] != 2 {
		t.Fatalf("first write: %v, %v", totals, err)
	}
	again, err := s.AddCounts(ctx, b)
	if err != nil || len(again) != 3 || again[0] != 5 || again[1] != 5 {
		t.Fatalf("the same batch again: %v, %v; want the totals unchanged", again, err)
	}
	totals, err = s.AddCounts(ctx, countBatch(keystore.CountDelta{Subject: "quota:AAAA", Start: day, N: 3}))
	if err != nil || totals[0] != 8 {
		t.Fatalf("a second batch: %v, %v; want 8", totals, err)
	}
	for _, c := range []struct {
		subject string
		start   time.Time
		want    int64
	}{{"quota:AAAA", day, 8}, {"uses:AAAA", life, 5}, {"quota:AAAA", day.AddDate(0, 0, -1), 2}, {"quota:BBBB", day, 0}} {
		if n, err := s.Count(ctx, c.subject, c.start); err != nil || n != c.want {
			t.Errorf("Count(%s, %v) = %d, %v; want %d", c.subject, c.start, n, err, c.want)
		}
	}
	if _, err := s.PruneUsage(ctx, day, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, "quota:AAAA", day.AddDate(0, 0, -1)); n != 0 {
		t.Errorf("a counter of a period before the retention was kept: %d", n)
	}
	if n, _ := s.Count(ctx, "uses:AAAA", life); n != 5 {
		t.Errorf("a lifetime counter was pruned: %d", n)
	}
	if n, _ := s.Count(ctx, "quota:AAAA", day); n != 8 {
		t.Errorf("a current counter was pruned: %d", n)
	}
}

// testCountersConcurrentWriters: gateways adding to one counter at once
// lose nothing.
func testCountersConcurrentWriters(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn := kind.NewDSN(t)
	s := Open(t, dsn, keystore.Options{})
	const writers, each = 4, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		other := Open(t, dsn, keystore.Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := other.AddCounts(ctx, countBatch(keystore.CountDelta{Subject: "quota:CCCC", Start: time.Unix(86400, 0), N: 1})); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, err := s.Count(ctx, "quota:CCCC", time.Unix(86400, 0)); err != nil || n != writers*each {
		t.Fatalf("%d counted (%v), want %d", n, err, writers*each)
	}
}
