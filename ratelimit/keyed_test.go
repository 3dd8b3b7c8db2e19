package ratelimit

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	for _, c := range []struct {
		rate     string
		burst    int
		want     Limit
		str      string
		window   int64
		quotaStr string
	}{
		{"100/s", 0, Limit{10 * time.Millisecond, 100}, "100/s", 1, ""},
		{"100/s", 200, Limit{10 * time.Millisecond, 200}, "100/s burst 200", 1, ""},
		{"60/m", 0, Limit{time.Second, 60}, "60/m", 60, ""},
		{"1/h", 5, Limit{time.Hour, 5}, "1/h burst 5", 3600, ""},
		{"7/s", 1, Limit{time.Second / 7, 1}, "7/s burst 1", 1, ""},
	} {
		p, err := ParsePolicy(c.rate, c.burst)
		if err != nil {
			t.Errorf("ParsePolicy(%q, %d): %v", c.rate, c.burst, err)
			continue
		}
		if p.Limit() != c.want || p.String() != c.str || p.Window() != c.window {
			t.Errorf("ParsePolicy(%q, %d) = %v (%q, window %d), want %v (%q, %d)", c.rate, c.burst, p.Limit(), p, p.Window(), c.want, c.str, c.window)
		}
	}
	for _, c := range []struct {
		rate  string
		burst int
		want  string
	}{
		{"", 0, "N/s, N/m or N/h"},
		{"100", 0, "N/s, N/m or N/h"},
		{"100/d", 0, "N/s, N/m or N/h"},
		{"100/month", 0, "N/s, N/m or N/h"},
		{"0/s", 0, "N/s, N/m or N/h"},
		{"-5/s", 0, "N/s, N/m or N/h"},
		{"1.5/s", 0, "N/s, N/m or N/h"},
		{" 5/s", 0, "N/s, N/m or N/h"},
		{"5/s", -1, "burst must be 1 to"},
		{"5/s", MaxBurst + 1, "burst must be 1 to"},
		{"2000000/s", 0, "needs a burst of at most"},
		{"2000000000/s", 10, "too high"},
	} {
		_, err := ParsePolicy(c.rate, c.burst)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParsePolicy(%q, %d) = %v, want an error with %q", c.rate, c.burst, err, c.want)
		}
	}
}

// TestKeyedAccuracy: a key offered three times its rate for 10 s gets
// rate × 10 s + burst through (±2%), and another key at its own rate is
// not affected.
func TestKeyedAccuracy(t *testing.T) {
	for _, c := range []struct {
		rate  string
		burst int
	}{{"100/s", 0}, {"100/s", 200}, {"10/s", 2}, {"600/m", 50}, {"36000/h", 10}, {"1000/s", 0}} {
		t.Run(fmt.Sprintf("%s burst %d", c.rate, c.burst), func(t *testing.T) {
			p, err := ParsePolicy(c.rate, c.burst)
			if err != nil {
				t.Fatal(err)
			}
			l := p.Limit()
			perSecond := float64(time.Second) / float64(l.Interval)
			k := NewKeyed(1000)
			now := time.Unix(1_800_000_000, 0)
			step := l.Interval / 3 // three times the rate
			var passed, otherPassed, otherOffered int
			end := now.Add(10 * time.Second)
			for i := 0; now.Before(end); i++ {
				if k.Take("busy", l, now).Allowed {
					passed++
				}
				// The other key sends at exactly its rate: all pass.
				if i%3 == 0 {
					otherOffered++
					if k.Take("calm", l, now).Allowed {
						otherPassed++
					}
				}
				now = now.Add(step)
			}
			want := perSecond*10 + float64(l.Burst)
			t.Logf("offered 3x for 10s: %d passed, rate x 10s + burst = %.0f (%+.2f%%)", passed, want, 100*(float64(passed)-want)/want)
			if diff := (float64(passed) - want) / want; diff > 0.02 || diff < -0.02 {
				t.Errorf("%d passed, want %.0f ±2%%", passed, want)
			}
			if otherPassed != otherOffered {
				t.Errorf("the other key: %d of %d passed", otherPassed, otherOffered)
			}
		})
	}
}

func TestKeyedDecision(t *testing.T) {
	l := Limit{Interval: time.Second, Burst: 3}
	k := NewKeyed(10)
	now := time.Unix(1_800_000_000, 0)
	for i, want := range []Decision{
		{Allowed: true, Remaining: 2, Reset: time.Second},
		{Allowed: true, Remaining: 1, Reset: 2 * time.Second},
		{Allowed: true, Remaining: 0, Reset: 3 * time.Second},
		{Allowed: false, Remaining: 0, Reset: 3 * time.Second, RetryAfter: time.Second},
	} {
		if got := k.Take("a", l, now); got != want {
			t.Fatalf("event %d: %+v, want %+v", i+1, got, want)
		}
	}
	now = now.Add(1500 * time.Millisecond)
	if got, want := k.Take("a", l, now), (Decision{Allowed: true, Remaining: 0, Reset: 2500 * time.Millisecond}); got != want {
		t.Fatalf("after 1.5s: %+v, want %+v", got, want)
	}
	k.Refund("a", l)
	if got, want := k.Take("a", l, now), (Decision{Allowed: true, Remaining: 0, Reset: 2500 * time.Millisecond}); got != want {
		t.Fatalf("after a refund: %+v, want %+v", got, want)
	}
}

// TestKeyedConcurrent: many goroutines on one key get exactly its burst.
func TestKeyedConcurrent(t *testing.T) {
	l := Limit{Interval: time.Hour, Burst: 100}
	k := NewKeyed(1000)
	now := time.Unix(1_800_000_000, 0)
	var passed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if k.Take("shared", l, now).Allowed {
					passed.Add(1)
				}
				k.Take(fmt.Sprintf("own-%d-%d", g, i), l, now)
			}
		}()
	}
	wg.Wait()
	if passed.Load() != 100 {
		t.Fatalf("%d passed under concurrency, want exactly the burst of 100", passed.Load())
	}
}

// TestKeyedBounded: millions of keys cannot grow the limiter beyond its
// capacity; keys at rest go first, so a busy key keeps its state.
func TestKeyedBounded(t *testing.T) {
	const capacity = 4096
	l := Limit{Interval: time.Millisecond, Burst: 1}
	busy := Limit{Interval: time.Hour, Burst: 2}
	k := NewKeyed(capacity)
	now := time.Unix(1_800_000_000, 0)
	k.Take("busy", busy, now)
	k.Take("busy", busy, now)
	for i := 0; i < 2_000_000; i++ {
		k.Take(strconvKey(i), l, now)
		if i%1000 == 0 {
			now = now.Add(2 * time.Millisecond) // the earlier keys come to rest
		}
	}
	if n := k.Len(); n > capacity+shardCount {
		t.Fatalf("limiter holds %d keys, capacity %d", n, capacity)
	}
	if k.Take("busy", busy, now).Allowed {
		t.Fatal("a busy key lost its state to keys at rest")
	}
}

func strconvKey(i int) string { return fmt.Sprintf("key-%08d", i) }

// benchKeyed is a limiter holding 1024 keys, their names, a limit none
// of the benchmarks reach, and a fixed time.
func benchKeyed() (*Keyed, []string, Limit, time.Time) {
	k := NewKeyed(1 << 20)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = strconvKey(i)
	}
	return k, keys, Limit{Interval: time.Microsecond, Burst: 1000}, time.Unix(1_800_000_000, 0)
}

// BenchmarkKeyedTake: the per-request cost for a key already held.
func BenchmarkKeyedTake(b *testing.B) {
	k, keys, l, now := benchKeyed()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k.Take(keys[i&1023], l, now)
	}
}

// BenchmarkKeyedTakeParallel: the same from every core at once.
func BenchmarkKeyedTakeParallel(b *testing.B) {
	k, keys, l, now := benchKeyed()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k.Take(keys[i&1023], l, now)
			i++
		}
	})
}
