package ratelimit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memStore is a shared counter store: what PostgreSQL is to gateways.
type memStore struct {
	mu    sync.Mutex
	m     map[CounterKey]int64
	reads int
	down  bool
}

func newMemStore() *memStore { return &memStore{m: map[CounterKey]int64{}} }

func (s *memStore) read(_ context.Context, k CounterKey) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if s.down {
		return 0, errors.New("store down")
	}
	return s.m[k], nil
}

// gateway is one process's counters and the batch it has not written yet.
type gateway struct {
	*Counters
	pending []CounterDelta
}

func newGateway(capacity int) *gateway { return &gateway{Counters: NewCounters(capacity)} }

// sync is one gateway's sync: Collect (unless a failed batch waits), add,
// read back, Written.
func (s *memStore) sync(g *gateway, now time.Time) error {
	if g.pending == nil {
		g.pending = g.Collect(now)
	}
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		return errors.New("store down")
	}
	totals := make([]int64, len(g.pending))
	for i, d := range g.pending {
		s.m[d.Key] += d.N
		totals[i] = s.m[d.Key]
	}
	s.mu.Unlock()
	g.Written(g.pending, totals)
	g.pending = nil
	return nil
}

func TestParseQuota(t *testing.T) {
	for in, want := range map[string]Quota{"10000/month": {10000, Month}, "1/day": {1, Day}} {
		got, err := ParseQuota(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseQuota(%q) = %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "100", "100/week", "100/d", "100/months", "0/day", "-1/day", "1.5/day", "9007199254740993/day", "x/month"} {
		if _, err := ParseQuota(bad); err == nil || !strings.Contains(err.Error(), "N/day or N/month") {
			t.Errorf("ParseQuota(%q) = %v, want an error naming the forms", bad, err)
		}
	}
}

func TestPeriods(t *testing.T) {
	at := time.Date(2026, 2, 28, 23, 59, 59, 0, time.FixedZone("x", -3600))
	if got := Day.Start(at); !got.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Day.Start = %v (UTC calendar day)", got)
	}
	if got := Month.End(at); !got.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Month.End = %v", got)
	}
	if !Lifetime.End(at).IsZero() || Lifetime.Start(at).Unix() != 0 {
		t.Error("Lifetime has a start at the epoch and no end")
	}
}

// TestCountersOneGateway: exactly the limit passes, whatever the
// concurrency; a refund gives one back.
func TestCountersOneGateway(t *testing.T) {
	s := newMemStore()
	c := newGateway(1000)
	k := CounterKey{Kind: "quota", Subject: "A", Start: Day.Start(time.Now()).Unix()}
	if err := c.Load(context.Background(), k, time.Time{}, s.read); err != nil {
		t.Fatal(err)
	}
	var passed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if ok, _ := c.Take(k, 250); ok {
					passed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if passed.Load() != 250 {
		t.Fatalf("%d passed, want exactly 250", passed.Load())
	}
	c.Refund(k)
	if ok, rem := c.Take(k, 250); !ok || rem != 0 {
		t.Fatalf("after a refund: %v, %d remaining", ok, rem)
	}
	if err := s.sync(c, time.Now()); err != nil || s.m[k] != 250 {
		t.Fatalf("store holds %d after the sync (%v), want 250", s.m[k], err)
	}
}

// TestCountersShared: gateways sharing a store let through at most the
// limit plus what the others counted within one sync interval; a new
// gateway (a restart) starts from the store's total.
func TestCountersShared(t *testing.T) {
	s := newMemStore()
	const limit, gateways, perInterval = 1000, 3, 20
	gs := make([]*gateway, gateways)
	k := CounterKey{Kind: "owner_quota", Subject: "acme", Start: Month.Start(time.Now()).Unix()}
	for i := range gs {
		gs[i] = newGateway(100)
		if err := gs[i].Load(context.Background(), k, time.Time{}, s.read); err != nil {
			t.Fatal(err)
		}
	}
	passed := 0
	for interval := 0; interval < 100; interval++ {
		for _, g := range gs {
			for i := 0; i < perInterval; i++ {
				if ok, _ := g.Take(k, limit); ok {
					passed++
				}
			}
		}
		for _, g := range gs {
			if err := s.sync(g, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	over := passed - limit
	if over < 0 || over > (gateways-1)*perInterval {
		t.Fatalf("%d passed with a limit of %d: overshoot %d, bound %d", passed, limit, over, (gateways-1)*perInterval)
	}
	t.Logf("%d gateways, %d requests each per sync: overshoot %d (bound %d)", gateways, perInterval, over, (gateways-1)*perInterval)

	restarted := NewCounters(100)
	if err := restarted.Load(context.Background(), k, time.Time{}, s.read); err != nil {
		t.Fatal(err)
	}
	if ok, _ := restarted.Take(k, limit); ok {
		t.Fatal("a restarted gateway let a request through a spent quota")
	}
}

// TestCountersStoreDown: a counter the store cannot be read for counts
// from zero and is put right by the next sync; one read, however many
// requests.
func TestCountersStoreDown(t *testing.T) {
	s := newMemStore()
	k := CounterKey{Kind: "uses", Subject: "B", Start: Lifetime.Start(time.Now()).Unix()}
	s.m[k] = 8
	s.down = true
	c := newGateway(100)
	for i := 0; i < 3; i++ {
		err := c.Load(context.Background(), k, time.Time{}, s.read)
		if (i == 0) != (err != nil) {
			t.Fatalf("load %d: %v", i, err)
		}
	}
	if s.reads != 1 {
		t.Fatalf("%d reads of a counter, want 1", s.reads)
	}
	if ok, rem := c.Take(k, 10); !ok || rem != 9 {
		t.Fatalf("while the store is down: %v, %d remaining", ok, rem)
	}
	if err := s.sync(c, time.Now()); err == nil {
		t.Fatal("sync succeeded while down")
	}
	s.down = false
	// The failed batch is written again: 8 + 1, and one more fits.
	if err := s.sync(c, time.Now()); err != nil {
		t.Fatal(err)
	}
	if ok, rem := c.Take(k, 10); !ok || rem != 0 {
		t.Fatalf("after the sync: %v, %d remaining; the store's total (%d) was not applied", ok, rem, s.m[k])
	}
	if ok, _ := c.Take(k, 10); ok {
		t.Fatal("past the limit once the store's total is known")
	}
}

// TestCountersForgetEndedPeriods: a synced counter whose period ended is
// dropped at the next Collect.
func TestCountersForgetEndedPeriods(t *testing.T) {
	s := newMemStore()
	c := newGateway(100)
	now := time.Date(2026, 11, 30, 23, 59, 0, 0, time.UTC)
	k := CounterKey{Kind: "quota", Subject: "C", Start: Day.Start(now).Unix()}
	c.Load(context.Background(), k, Day.End(now), s.read)
	c.Take(k, 10)
	s.sync(c, now)
	c.Collect(now)
	if c.Len() != 1 {
		t.Fatal("a counter of the current period was dropped")
	}
	c.Collect(now.Add(time.Minute))
	if c.Len() != 0 {
		t.Fatal("a counter of a past period was kept")
	}
}

func BenchmarkCountersTake(b *testing.B) {
	c := NewCounters(1 << 20)
	k := CounterKey{Kind: "quota", Subject: "D", Start: Month.Start(time.Now()).Unix()}
	c.Load(context.Background(), k, time.Time{}, func(context.Context, CounterKey) (int64, error) { return 0, nil })
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.Take(k, 1<<62)
	}
}
