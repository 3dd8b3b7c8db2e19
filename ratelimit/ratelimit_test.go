package ratelimit

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"20/s", 50 * time.Millisecond},
		{"1/s", time.Second},
		{"60/m", time.Second},
		{"3600/h", time.Second},
		{"1/h", time.Hour},
	} {
		got, err := ParseRate(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if back := FormatRate(got); c.in == "20/s" && back != "20/s" {
			t.Errorf("FormatRate(%v) = %q", got, back)
		}
	}
	for _, bad := range []string{"", "20", "20/d", "0/s", "-1/s", "x/s", "1.5/s", "20/ s", "2000000000/s"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}

func TestGCRABurstThenRate(t *testing.T) {
	l := Limit{Interval: 100 * time.Millisecond, Burst: 5}
	now := time.Unix(1000, 0)
	var s State
	for i := 0; i < 5; i++ {
		var ok bool
		if s, ok, _ = l.Allow(s, now); !ok {
			t.Fatalf("event %d of a burst of 5 refused", i+1)
		}
	}
	_, ok, wait := l.Allow(s, now)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("6th event at once: ok %v wait %v, want refused for 100ms", ok, wait)
	}
	// At the sustained rate, exactly one event per interval passes.
	passed := 0
	for step := 0; step < 100; step++ {
		now = now.Add(10 * time.Millisecond)
		var allowed bool
		if s, allowed, _ = l.Allow(s, now); allowed {
			passed++
		}
	}
	if passed != 10 {
		t.Fatalf("%d events passed in 1s at 10/s, want 10", passed)
	}
	if !s.idle(now.Add(time.Second)) || s.idle(now) {
		t.Fatal("Idle wrong")
	}
}

func TestTableSpendAndExhausted(t *testing.T) {
	tab := NewTable(Limit{Interval: time.Second, Burst: 3}, 100)
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	if ex, _ := tab.Exhausted(a, now); ex {
		t.Fatal("a new client is exhausted")
	}
	for i := 0; i < 3; i++ {
		if ok, _ := tab.Spend(a, now); !ok {
			t.Fatalf("spend %d refused", i+1)
		}
	}
	ex, wait := tab.Exhausted(a, now)
	if !ex || wait != time.Second {
		t.Fatalf("after the burst: exhausted %v wait %v", ex, wait)
	}
	if ok, wait := tab.Spend(a, now); ok || wait != time.Second {
		t.Fatalf("spend beyond the budget: ok %v wait %v", ok, wait)
	}
	if ex, _ := tab.Exhausted(netip.MustParseAddr("192.0.2.2"), now); ex {
		t.Fatal("another client shares the budget")
	}
	if ex, _ := tab.Exhausted(a, now.Add(time.Second)); ex {
		t.Fatal("budget not restored at the sustained rate")
	}
}

// TestTableIPv6Prefix: the addresses of one /64 share a budget; IPv4 and
// IPv4-mapped IPv6 are the same client.
func TestTableIPv6Prefix(t *testing.T) {
	tab := NewTable(Limit{Interval: time.Hour, Burst: 1}, 100)
	now := time.Unix(1000, 0)
	tab.Spend(netip.MustParseAddr("2001:db8:1:2::1"), now)
	if ex, _ := tab.Exhausted(netip.MustParseAddr("2001:db8:1:2:ffff::9"), now); !ex {
		t.Error("another address of the same /64 has a budget of its own")
	}
	if ex, _ := tab.Exhausted(netip.MustParseAddr("2001:db8:1:3::1"), now); ex {
		t.Error("another /64 shares the budget")
	}
	tab.Spend(netip.MustParseAddr("198.51.100.7"), now)
	if ex, _ := tab.Exhausted(netip.MustParseAddr("::ffff:198.51.100.7"), now); !ex {
		t.Error("IPv4-mapped address has a budget of its own")
	}
}

// TestTableBoundedUnderSpraying: a million addresses cannot grow the table
// beyond its capacity.
func TestTableBoundedUnderSpraying(t *testing.T) {
	const capacity = 1024
	tab := NewTable(Limit{Interval: 50 * time.Millisecond, Burst: 2}, capacity)
	now := time.Unix(1000, 0)
	var b [4]byte
	for i := 0; i < 1_000_000; i++ {
		b[0], b[1], b[2], b[3] = 10, byte(i>>16), byte(i>>8), byte(i)
		tab.Spend(netip.AddrFrom4(b), now)
		if i%1000 == 0 {
			now = now.Add(time.Millisecond)
		}
	}
	if n := tab.Len(); n > capacity+shardCount {
		t.Fatalf("table holds %d clients, capacity %d", n, capacity)
	}
}

func TestTableConcurrent(t *testing.T) {
	tab := NewTable(Limit{Interval: time.Hour, Burst: 100}, 1000)
	now := time.Unix(1000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if ok, _ := tab.Spend(a, now); ok {
					mu.Lock()
					passed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if passed != 100 {
		t.Fatalf("%d spends passed under concurrency, want exactly the burst of 100", passed)
	}
}

func TestTableRefund(t *testing.T) {
	tab := NewTable(Limit{Interval: time.Hour, Burst: 2}, 100)
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	for i := 0; i < 10; i++ {
		if ok, _ := tab.Spend(a, now); !ok {
			t.Fatalf("spend %d refused although every earlier one was refunded", i+1)
		}
		tab.Refund(a)
	}
	tab.Spend(a, now)
	tab.Spend(a, now)
	if ok, _ := tab.Spend(a, now); ok {
		t.Fatal("spends that were not refunded did not count")
	}
	tab.Refund(netip.MustParseAddr("192.0.2.99")) // unknown client: nothing happens
}

func TestLimitValidate(t *testing.T) {
	for _, l := range []Limit{
		{Interval: 0, Burst: 1},
		{Interval: time.Second, Burst: 0},
		{Interval: time.Second, Burst: MaxBurst + 1},
		{Interval: time.Hour, Burst: MaxBurst}, // a million hours: would overflow with the clock
	} {
		if err := l.Validate(); err == nil {
			t.Errorf("%+v accepted", l)
		}
	}
	for _, l := range []Limit{{Interval: time.Millisecond, Burst: MaxBurst}, {Interval: time.Hour, Burst: 1000}} {
		if err := l.Validate(); err != nil {
			t.Errorf("%+v refused: %v", l, err)
		}
	}
}
