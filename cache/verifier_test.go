package cache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/keystore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStore stands in for a store where the tests need one to fail, stall
// or count in ways a real database cannot be made to on cue. The stores
// themselves are tested for real in keystore and tests/.
type fakeStore struct {
	mu      sync.Mutex
	keys    map[keystore.Digest]*keystore.Key
	err     error         // returned by every Lookup when set
	gate    chan struct{} // when set, Lookup waits for it to close
	deaf    bool          // Lookup waits for gate even past its deadline
	queries atomic.Int64
	active  atomic.Int64
	peak    atomic.Int64
}

func newFakeStore() *fakeStore { return &fakeStore{keys: map[keystore.Digest]*keystore.Key{}} }

func (s *fakeStore) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	s.queries.Add(1)
	n := s.active.Add(1)
	defer s.active.Add(-1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	s.mu.Lock()
	gate, err, deaf := s.gate, s.err, s.deaf
	s.mu.Unlock()
	if gate != nil && deaf {
		<-gate
	} else if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[d]
	if !ok {
		return nil, keystore.ErrNotFound
	}
	c := *k
	return &c, nil
}

// block makes every Lookup wait until release is called (deaf: even past
// its deadline). The test's cleanup releases it too, before the verifier
// closes, so that a failing test ends instead of waiting for queries
// that never return: call it after newVerifier.
func (s *fakeStore) block(t *testing.T, deaf bool) (release func()) {
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	s.set(func(s *fakeStore) { s.gate, s.deaf = gate, deaf })
	t.Cleanup(release)
	return release
}

func (s *fakeStore) set(f func(s *fakeStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *fakeStore) add(name string) keystore.Digest {
	d := randomDigest()
	s.set(func(s *fakeStore) { s.keys[d] = &keystore.Key{ID: name, Name: name, Digest: d} })
	return d
}

func randomDigest() keystore.Digest {
	var d keystore.Digest
	rand.Read(d[:])
	return d
}

func newVerifier(t *testing.T, s Lookuper, cfg Config) (*Verifier, *clock.Fake) {
	t.Helper()
	c := clock.NewFake(time.Unix(1_700_000_000, 0))
	cfg.Clock = c
	v, err := New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v, c
}

func TestHitMissAndTTL(t *testing.T) {
	s := newFakeStore()
	v, clk := newVerifier(t, s, Config{TTL: time.Minute})
	d := s.add("a")
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		k, err := v.Verify(ctx, d)
		if err != nil || k.ID != "a" {
			t.Fatalf("Verify: %v %v", k, err)
		}
	}
	if q := s.queries.Load(); q != 1 {
		t.Fatalf("%d store queries for 5 lookups of one key, want 1", q)
	}
	clk.Advance(time.Minute + time.Second)
	if _, err := v.Verify(ctx, d); err != nil {
		t.Fatal(err)
	}
	if q := s.queries.Load(); q != 2 {
		t.Fatalf("entry older than TTL was not re-read (queries %d)", q)
	}
	if v.Stats.Hits.Load() != 4 || v.Stats.Misses.Load() != 2 {
		t.Fatalf("hits %d misses %d", v.Stats.Hits.Load(), v.Stats.Misses.Load())
	}
}

func TestNegativeCache(t *testing.T) {
	s := newFakeStore()
	v, clk := newVerifier(t, s, Config{NegativeTTL: 5 * time.Second})
	d := randomDigest()
	for i := 0; i < 10; i++ {
		if _, err := v.Verify(context.Background(), d); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("Verify of unknown digest: %v", err)
		}
	}
	if q := s.queries.Load(); q != 1 {
		t.Fatalf("%d store queries for one unknown digest within the negative TTL, want 1", q)
	}
	clk.Advance(6 * time.Second)
	v.Verify(context.Background(), d)
	if q := s.queries.Load(); q != 2 {
		t.Fatalf("negative entry outlived its TTL (queries %d)", q)
	}
}

// TestFloodDoesNotEvictRealKeys fills the negative cache far past its size
// and checks that the real key is still served from memory.
func TestFloodDoesNotEvictRealKeys(t *testing.T) {
	s := newFakeStore()
	v, _ := newVerifier(t, s, Config{MaxKeys: 100, NegativeMaxKeys: 100})
	real := s.add("real")
	if _, err := v.Verify(context.Background(), real); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5000; i++ {
		v.Verify(context.Background(), randomDigest())
	}
	before := s.queries.Load()
	if _, err := v.Verify(context.Background(), real); err != nil {
		t.Fatal(err)
	}
	if s.queries.Load() != before {
		t.Fatal("a flood of unknown digests evicted a real key from the cache")
	}
}

func TestConcurrentMissesMakeOneQuery(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	gate := make(chan struct{})
	s.set(func(s *fakeStore) { s.gate = gate })
	v, _ := newVerifier(t, s, Config{QueryTimeout: 10 * time.Second})
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), d)
			errs <- err
		}()
	}
	// Let every request join the lookup before the store answers: one
	// that counted its miss but had not joined yet would start a second
	// lookup once the first is over.
	for waiting(v, d) < n {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if q := s.queries.Load(); q != 1 {
		t.Fatalf("%d concurrent misses made %d store queries, want 1", n, q)
	}
}

func TestQueryDeadline(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	s.set(func(s *fakeStore) { s.gate = make(chan struct{}) }) // never answers
	v, _ := newVerifier(t, s, Config{QueryTimeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := v.Verify(context.Background(), d)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Verify against a stalled store: %v, want ErrUnavailable", err)
	}
	if errors.Is(err, keystore.ErrNotFound) {
		t.Fatal("a stalled store must not look like an unknown key")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("deadline of 50ms took %v", el)
	}
}

func TestCallerContextEndsWait(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	gate := make(chan struct{})
	s.set(func(s *fakeStore) { s.gate = gate })
	v, _ := newVerifier(t, s, Config{QueryTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := v.Verify(ctx, d); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Verify with an expired context: %v", err)
	}
	close(gate)
}

func TestConcurrentQueriesBounded(t *testing.T) {
	s := newFakeStore()
	gate := make(chan struct{})
	s.set(func(s *fakeStore) { s.gate = gate })
	v, _ := newVerifier(t, s, Config{MaxQueries: 3, QueryTimeout: 10 * time.Second})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.Verify(context.Background(), randomDigest())
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.active.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(gate)
	wg.Wait()
	if p := s.peak.Load(); p != 3 {
		t.Fatalf("peak concurrent store queries %d, want 3", p)
	}
}

func TestStaleWhileStoreDown(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	v, clk := newVerifier(t, s, Config{TTL: 10 * time.Second, MaxStale: time.Minute, QueryTimeout: 50 * time.Millisecond})
	ctx := context.Background()
	if _, err := v.Verify(ctx, d); err != nil {
		t.Fatal(err)
	}
	s.set(func(s *fakeStore) { s.err = errors.New("connection refused") })
	clk.Advance(30 * time.Second)
	if k, err := v.Verify(ctx, d); err != nil || k.ID != "a" {
		t.Fatalf("cached key within max staleness: %v %v", k, err)
	}
	if v.Stats.StaleHits.Load() != 1 {
		t.Fatal("stale hit not counted")
	}
	// A key that was never cached gets ErrUnavailable, not ErrNotFound.
	if _, err := v.Verify(ctx, s.add("b")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("uncached key with the store down: %v", err)
	}
	if _, err := v.Verify(ctx, randomDigest()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown key with the store down: %v", err)
	}
	clk.Advance(time.Minute)
	if _, err := v.Verify(ctx, d); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cached key beyond max staleness: %v", err)
	}
	// The store comes back: everything works again without intervention.
	s.set(func(s *fakeStore) { s.err = nil })
	if _, err := v.Verify(ctx, d); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// TestStaleRefreshSeesRevocation: while the verifier believes the store
// is down, a stale entry is served at once and re-read in the background;
// that background read is the only query that can find out the store is
// back, and it must bring the revocation in.
func TestStaleRefreshSeesRevocation(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	v, clk := newVerifier(t, s, Config{TTL: 10 * time.Second, MaxStale: time.Minute, QueryTimeout: 50 * time.Millisecond})
	ctx := context.Background()
	v.Verify(ctx, d)
	s.set(func(s *fakeStore) { s.err = errors.New("connection refused") })
	if _, err := v.Verify(ctx, randomDigest()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("lookup against a failing store: %v", err)
	}
	if !v.storeDown.Load() {
		t.Fatal("a failed query did not put the verifier in store-down mode")
	}
	s.set(func(s *fakeStore) { s.err = nil; s.keys[d].RevokedAt = time.Now() })
	clk.Advance(11 * time.Second)
	queries := s.queries.Load()
	if k, err := v.Verify(ctx, d); err != nil || !k.RevokedAt.IsZero() {
		t.Fatalf("stale entry while the store is believed down: %+v %v; want the cached record at once", k, err)
	}
	waitRevoked(t, v, d, "background refresh never picked up the revocation")
	if s.queries.Load() == queries {
		t.Fatal("the revocation arrived without a store query")
	}
}

func TestInvalidate(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	v, _ := newVerifier(t, s, Config{TTL: time.Hour})
	ctx := context.Background()
	v.Verify(ctx, d)
	s.set(func(s *fakeStore) { s.keys[d].RevokedAt = time.Now() })
	v.Invalidate(d)
	k, err := v.Verify(ctx, d)
	if err != nil || k.RevokedAt.IsZero() {
		t.Fatalf("after Invalidate the old record was served: %v %+v", err, k)
	}
	// A negative entry is dropped too, so a key created after a lookup of
	// its digest works at once.
	unknown := randomDigest()
	v.Verify(ctx, unknown)
	s.set(func(s *fakeStore) { s.keys[unknown] = &keystore.Key{ID: "new", Digest: unknown} })
	v.Invalidate(unknown)
	if _, err := v.Verify(ctx, unknown); err != nil {
		t.Fatalf("key created after a negative lookup: %v", err)
	}
}

// TestInvalidateDuringQuery: a query that read the row before a revocation
// must not put the old row back into the cache after the invalidation.
func TestInvalidateDuringQuery(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	gate := make(chan struct{})
	s.set(func(s *fakeStore) { s.gate = gate })
	v, _ := newVerifier(t, s, Config{TTL: time.Hour, QueryTimeout: 10 * time.Second})
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Verify(ctx, d)
	}()
	for s.active.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	v.Invalidate(d) // the revocation lands while the query is in flight
	s.set(func(s *fakeStore) { s.gate = nil; s.keys[d].RevokedAt = time.Now() })
	close(gate)
	<-done
	k, err := v.Verify(ctx, d)
	if err != nil || k.RevokedAt.IsZero() {
		t.Fatalf("a query that overlapped an invalidation was cached: %v %+v", err, k)
	}
}

func TestPurge(t *testing.T) {
	s := newFakeStore()
	a, b := s.add("a"), s.add("b")
	v, _ := newVerifier(t, s, Config{TTL: time.Hour})
	ctx := context.Background()
	v.Verify(ctx, a)
	v.Verify(ctx, b)
	v.Purge()
	v.Verify(ctx, a)
	v.Verify(ctx, b)
	if q := s.queries.Load(); q != 4 {
		t.Fatalf("after Purge %d queries, want 4", q)
	}
}

func TestStoreReturningWrongDigest(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	other := randomDigest()
	s.set(func(s *fakeStore) { s.keys[other] = s.keys[d] })
	v, _ := newVerifier(t, s, Config{})
	if _, err := v.Verify(context.Background(), other); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("record with another digest: %v", err)
	}
}

func BenchmarkVerifyHit(b *testing.B) {
	s := newFakeStore()
	d := s.add("a")
	v, err := New(s, Config{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	v.Verify(context.Background(), d)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := v.Verify(ctx, d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestPurgeKeepsFallback: a purge during an outage (the listener reconnects
// while the pool cannot) must not turn cached keys into 503s.
func TestPurgeKeepsFallback(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	unknown := randomDigest()
	v, _ := newVerifier(t, s, Config{TTL: time.Hour, QueryTimeout: 50 * time.Millisecond})
	ctx := context.Background()
	v.Verify(ctx, d)
	v.Verify(ctx, unknown)
	s.set(func(s *fakeStore) { s.err = errors.New("connection refused") })
	v.Purge()
	if k, err := v.Verify(ctx, d); err != nil || k.ID != "a" {
		t.Fatalf("cached key after a purge with the store down: %v %v", k, err)
	}
	if _, err := v.Verify(ctx, unknown); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("purged negative entry must be asked again: %v", err)
	}
	// After recovery the entry is re-read: at once, or (while the
	// verifier still believes the store is down) by the background refresh
	// the first request starts.
	s.set(func(s *fakeStore) { s.err = nil; s.keys[d].RevokedAt = time.Now() })
	waitRevoked(t, v, d, "after recovery the purged entry was never re-read")
}

// waitRevoked polls v until it returns d's record as revoked, for changes
// that a background refresh delivers.
func waitRevoked(t *testing.T, v *Verifier, d keystore.Digest, failure string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		k, err := v.Verify(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		if !k.RevokedAt.IsZero() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestInvalidateBetweenCheckAndSet lands an invalidation in the one window
// that the fill's overlap check cannot see: after the check decided to
// keep the answer and before ristretto stores it (ristretto deletes at
// once but applies the later set from its buffer). The entry that lands
// must never be served: the next lookup asks the store again.
func TestInvalidateBetweenCheckAndSet(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	v, _ := newVerifier(t, s, Config{TTL: time.Hour})
	ctx := context.Background()
	v.beforeSet = func(got keystore.Digest) {
		if got != d {
			return
		}
		s.set(func(s *fakeStore) { s.keys[d].RevokedAt = time.Unix(1, 0) })
		v.Invalidate(d)
	}
	if _, err := v.Verify(ctx, d); err != nil {
		t.Fatal(err)
	}
	v.beforeSet = nil
	k, err := v.Verify(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if k.RevokedAt.IsZero() {
		t.Fatal("an entry read before an invalidation and stored after it was served: the revocation was undone")
	}
	if q := s.queries.Load(); q != 2 {
		t.Fatalf("%d store queries, want 2 (the second lookup must ask the store)", q)
	}
}

// TestSlotWaitIsNotAStoreError: a lookup that times out waiting for a
// query slot (the store is busy with other queries, not down) fails closed
// but is not counted as a store error and does not switch the verifier
// into its store-down mode.
func TestSlotWaitIsNotAStoreError(t *testing.T) {
	s := newFakeStore()
	v, _ := newVerifier(t, s, Config{MaxQueries: 1, QueryTimeout: 100 * time.Millisecond})
	release := s.block(t, true)
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		v.Verify(context.Background(), randomDigest()) // holds the only slot
	}()
	for s.active.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	_, err := v.Verify(context.Background(), s.add("a"))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("waiting for a slot past the deadline: %v, want ErrUnavailable (503)", err)
	}
	if v.storeDown.Load() {
		t.Error("a busy store was taken for a store that is down")
	}
	release()
	<-busy
	if n := v.Stats.StoreErrors.Load(); n != 0 {
		t.Fatalf("%d store errors counted for a wait for a query slot", n)
	}
}

// TestAbandonedLookupIsCancelled: when every request waiting for a lookup
// has gone, the lookup is cancelled instead of running to its deadline.
func TestAbandonedLookupIsCancelled(t *testing.T) {
	s := newFakeStore()
	v, _ := newVerifier(t, s, Config{QueryTimeout: time.Minute})
	s.block(t, false) // never answers
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := v.Verify(ctx, randomDigest())
		done <- err
	}()
	for s.active.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Verify after its caller left: %v", err)
	}
	if ok, _ := waitFor(5*time.Second, func() bool { return s.active.Load() == 0 }); !ok {
		t.Fatal("the store query ran on after every waiter had gone")
	}
	if n := v.Stats.StoreErrors.Load(); n != 0 {
		t.Fatalf("an abandoned lookup counted as %d store errors", n)
	}
}

// waitFor polls f until it is true or limit passes.
func waitFor(limit time.Duration, f func() bool) (bool, time.Duration) {
	start := time.Now()
	for !f() {
		if time.Since(start) > limit {
			return false, time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
	return true, time.Since(start)
}

// holdSlots makes n lookups that occupy n query slots until release is
// closed, whatever their deadline.
func holdSlots(t *testing.T, v *Verifier, s *fakeStore, n int) (release func()) {
	t.Helper()
	unblock := s.block(t, true)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.Verify(context.Background(), randomDigest())
		}()
	}
	if ok, _ := waitFor(5*time.Second, func() bool { return s.active.Load() == int64(n) }); !ok {
		t.Fatalf("%d of %d slot holders reached the store", s.active.Load(), n)
	}
	s.set(func(s *fakeStore) { s.gate, s.deaf = nil, false })
	return func() { unblock(); wg.Wait() }
}

// TestFullQueueFailsFast: once MaxQueued lookups wait for a slot, the next
// one fails at once with ErrBusy instead of waiting for its deadline.
func TestFullQueueFailsFast(t *testing.T) {
	s := newFakeStore()
	v, _ := newVerifier(t, s, Config{MaxQueries: 1, MaxQueued: 2, QueryTimeout: time.Minute})
	release := holdSlots(t, v, s, 1)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.Verify(ctx, randomDigest())
		}()
	}
	if ok, _ := waitFor(5*time.Second, func() bool { return v.queued.Load() == 2 }); !ok {
		t.Fatalf("%d lookups queued, want 2", v.queued.Load())
	}
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), randomDigest())
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrBusy) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("lookup beyond a full queue: %v, want ErrBusy (and ErrUnavailable)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a lookup beyond a full queue waited instead of failing at once")
	}
	if v.Stats.Busy.Load() != 1 || v.Stats.StoreErrors.Load() != 0 {
		t.Fatalf("busy %d, store errors %d; want 1 and 0", v.Stats.Busy.Load(), v.Stats.StoreErrors.Load())
	}
	cancel()
	wg.Wait()
	release()
}

// TestAbandonedFloodLeavesNoGoroutines: a flood of distinct unknown keys
// whose clients leave at once must not leave lookups (and their
// goroutines) running until the query deadline.
func TestAbandonedFloodLeavesNoGoroutines(t *testing.T) {
	s := newFakeStore()
	v, _ := newVerifier(t, s, Config{MaxQueries: 4, QueryTimeout: time.Minute})
	s.block(t, false) // the store never answers
	base := runtime.NumGoroutine()
	const n = 1000
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.Verify(ctx, randomDigest())
		}()
	}
	if ok, _ := waitFor(10*time.Second, func() bool { return v.Stats.Misses.Load() == n }); !ok {
		t.Fatalf("only %d of %d lookups started", v.Stats.Misses.Load(), n)
	}
	cancel()
	wg.Wait()
	settled := func() bool { return v.Stats.Abandoned.Load()+v.Stats.Busy.Load() == n }
	if ok, _ := waitFor(10*time.Second, func() bool { return runtime.NumGoroutine() <= base && settled() }); !ok {
		t.Fatalf("%d goroutines left after every client went away (%d before)", runtime.NumGoroutine(), base)
	}
	// Those beyond the queue failed at once; the others were cancelled.
	if a, b := v.Stats.Abandoned.Load(), v.Stats.Busy.Load(); a+b != n || b == 0 {
		t.Errorf("%d lookups abandoned and %d refused as busy, want %d in all, some refused", a, b, n)
	}
	if e := v.Stats.StoreErrors.Load(); e != 0 {
		t.Errorf("abandoned lookups counted as %d store errors", e)
	}
}

// TestBusyServesStaleEntry: a cached key past its TTL keeps working while
// no query slot is free, as it does while the store is down.
func TestBusyServesStaleEntry(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	v, clk := newVerifier(t, s, Config{TTL: time.Second, MaxStale: time.Minute, MaxQueries: 1, QueryTimeout: 50 * time.Millisecond})
	if _, err := v.Verify(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	release := holdSlots(t, v, s, 1)
	defer release()
	if k, err := v.Verify(context.Background(), d); err != nil || k.ID != "a" {
		t.Fatalf("stale key while the store is busy: %v %v", k, err)
	}
}

func TestCached(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	unknown := randomDigest()
	v, clk := newVerifier(t, s, Config{TTL: time.Minute, MaxStale: time.Hour})
	ctx := context.Background()
	if _, _, found := v.Cached(d); found {
		t.Fatal("Cached found a key never looked up")
	}
	v.Verify(ctx, d)
	v.Verify(ctx, unknown)
	if k, err, found := v.Cached(d); !found || err != nil || k.ID != "a" {
		t.Fatalf("Cached after a lookup: %v %v %v", k, err, found)
	}
	if _, err, found := v.Cached(unknown); !found || !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Cached of an unknown key: %v %v", err, found)
	}
	queries := s.queries.Load()
	clk.Advance(2 * time.Minute)
	if _, _, found := v.Cached(d); found {
		t.Fatal("Cached answered with an entry past its TTL")
	}
	if s.queries.Load() != queries {
		t.Fatal("Cached asked the store")
	}
	v.Verify(ctx, d)
	v.Invalidate(d)
	if _, _, found := v.Cached(d); found {
		t.Fatal("Cached answered for an invalidated key")
	}
}

// snapshotStore reads the record when the query starts, then waits for
// gate: a database answers with the row as it was when the statement
// began, however long the answer takes to arrive.
type snapshotStore struct {
	*fakeStore
	gate    chan struct{}
	started chan struct{}
}

func (s *snapshotStore) Lookup(ctx context.Context, d keystore.Digest) (*keystore.Key, error) {
	s.mu.Lock()
	k, ok := s.keys[d]
	var c keystore.Key
	if ok {
		c = *k
	}
	s.mu.Unlock()
	s.started <- struct{}{}
	<-s.gate
	if !ok {
		return nil, keystore.ErrNotFound
	}
	return &c, nil
}

// TestOverlappedFillIsNotKept: a query that read the row before an
// invalidation and answers after it is not stored at all (and could not
// be served if it were, see TestInvalidateBetweenCheckAndSet).
func TestOverlappedFillIsNotKept(t *testing.T) {
	s := &snapshotStore{fakeStore: newFakeStore(), gate: make(chan struct{}), started: make(chan struct{}, 1)}
	d := s.add("a")
	v, _ := newVerifier(t, s, Config{TTL: time.Hour, QueryTimeout: 10 * time.Second})
	done := make(chan *keystore.Key)
	go func() {
		k, _ := v.Verify(context.Background(), d)
		done <- k
	}()
	<-s.started // the old row is read
	s.set(func(s *fakeStore) { s.keys[d].RevokedAt = time.Unix(1, 0) })
	v.Invalidate(d)
	close(s.gate)
	if k := <-done; !k.RevokedAt.IsZero() {
		t.Fatal("the snapshot store did not answer with the old row")
	}
	if _, ok := v.pos.Get(slot(d)); ok {
		t.Fatal("a fill whose query overlapped an invalidation was stored")
	}
	k, err := v.Verify(context.Background(), d)
	if err != nil || k.RevokedAt.IsZero() {
		t.Fatalf("after the invalidation the old row was served: %v %+v", err, k)
	}
}

// TestSlotCollision: two digests that share a cache slot (the first 8
// bytes) are different keys: a hit is a hit only if the full digest
// matches.
func TestSlotCollision(t *testing.T) {
	s := newFakeStore()
	d := s.add("a")
	other := randomDigest()
	copy(other[:8], d[:8])
	v, _ := newVerifier(t, s, Config{TTL: time.Hour})
	ctx := context.Background()
	if _, err := v.Verify(ctx, d); err != nil {
		t.Fatal(err)
	}
	if k, err, found := v.Cached(other); found && err == nil {
		t.Fatalf("Cached answered a colliding digest with key %s", k.ID)
	}
	if k, err := v.Verify(ctx, other); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Verify of a digest sharing a's slot: %+v, %v; want ErrNotFound", k, err)
	}
	// And the other way round: a negative entry does not answer for a.
	v.Invalidate(d)
	v.Verify(ctx, other)
	if k, err := v.Verify(ctx, d); err != nil || k.ID != "a" {
		t.Fatalf("a after a colliding unknown digest: %+v, %v", k, err)
	}
}

// TestVerifyHitDoesNotAllocate: a cache hit, the request path's common
// case, costs no allocation.
func TestVerifyHitDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race; scripts/test.sh runs this without it")
	}
	s := newFakeStore()
	d := s.add("a")
	v, _ := newVerifier(t, s, Config{TTL: time.Hour})
	ctx := context.Background()
	if _, err := v.Verify(ctx, d); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(1000, func() {
		if k, err := v.Verify(ctx, d); err != nil || k.ID != "a" {
			t.Fatal("not a hit")
		}
	}); allocs != 0 {
		t.Fatalf("a cache hit allocates %.1f times", allocs)
	}
	if h := v.Stats.Hits.Load(); h < 1000 {
		t.Fatalf("%d hits counted: the loop did not hit the cache", h)
	}
}

// heapAfter returns the live heap after f, collected.
func heapAfter(f func()) uint64 {
	f()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCacheMemoryFollowsKeys: a large configured size reserves no memory
// up front; memory grows with the keys actually cached. (Before, an empty
// cache sized for 10M keys took about 770 MiB.)
func TestCacheMemoryFollowsKeys(t *testing.T) {
	var large *Verifier
	base := heapAfter(func() {})
	withLarge := heapAfter(func() { large, _ = New(newFakeStore(), Config{MaxKeys: 10_000_000, NegativeMaxKeys: 10_000_000}) })
	defer large.Close()
	cost := int64(withLarge) - int64(base)
	t.Logf("an empty cache sized for 10,000,000 keys (and as many unknown ones) costs %d KiB", cost>>10)
	if cost > 32<<20 {
		t.Fatalf("an empty cache sized for 10M keys costs %d MiB: memory follows the setting, not the keys", cost>>20)
	}
}

// TestCacheEntryCost measures what a cached key costs, for the estimate
// the handler checks configured sizes against (bytesPerKey there).
func TestCacheEntryCost(t *testing.T) {
	s := newFakeStore()
	const n = 20_000
	var ds []keystore.Digest
	for i := 0; i < n; i++ {
		d := randomDigest()
		s.keys[d] = &keystore.Key{ID: fmt.Sprintf("k%011d", i), Name: "a key", Owner: "acme", Digest: d}
		ds = append(ds, d)
	}
	var v *Verifier
	before := heapAfter(func() { v, _ = New(s, Config{MaxKeys: n * 2, NegativeMaxKeys: n * 2, TTL: time.Hour}) })
	defer v.Close()
	pos := heapAfter(func() {
		for _, d := range ds {
			v.Verify(context.Background(), d)
		}
	})
	neg := heapAfter(func() {
		for range n {
			v.Verify(context.Background(), randomDigest())
		}
	})
	perKey, perUnknown := (int64(pos)-int64(before))/n, (int64(neg)-int64(pos))/n
	t.Logf("a cached key costs about %d bytes (the store's record included), an unknown one %d", perKey, perUnknown)
	// caddymodule estimates 384 and 256 bytes (bytesPerKey,
	// bytesPerUnknownKey); within a factor of two is close enough.
	if perKey < 384/2 || perKey > 384*2 || perUnknown < 256/2 || perUnknown > 256*2 {
		t.Fatalf("entry cost %d/%d bytes: update bytesPerKey and bytesPerUnknownKey in caddymodule", perKey, perUnknown)
	}
}

// waiting is how many requests wait for the lookup of d in flight.
func waiting(v *Verifier, d keystore.Digest) int {
	v.flights.mu.Lock()
	defer v.flights.mu.Unlock()
	if c := v.flights.calls[d]; c != nil {
		return c.waiters
	}
	return 0
}

// TestCacheMemoryBoundedBySize: however many distinct keys are used, the
// cache's memory stays bounded by its configured sizes, not by the keys:
// 100,000 known and 100,000 unknown keys through caches sized for 1,000
// each take no more than a few MiB (unbounded, they would take about
// 100,000 × (384 + 256) bytes, 61 MiB).
func TestCacheMemoryBoundedBySize(t *testing.T) {
	s := newFakeStore()
	const size, n = 1000, 100_000
	var ds []keystore.Digest
	for i := range n {
		d := randomDigest()
		s.keys[d] = &keystore.Key{ID: fmt.Sprintf("k%011d", i), Name: "a key", Owner: "acme", Digest: d}
		ds = append(ds, d)
	}
	var v *Verifier
	before := heapAfter(func() { v, _ = New(s, Config{MaxKeys: size, NegativeMaxKeys: size, TTL: time.Hour}) })
	defer v.Close()
	after := heapAfter(func() {
		for _, d := range ds {
			v.Verify(context.Background(), d)
		}
		for range n {
			v.Verify(context.Background(), randomDigest())
		}
		v.pos.Wait()
		v.neg.Wait()
	})
	grown := int64(after) - int64(before)
	t.Logf("%d known and %d unknown keys through caches of %d entries each: the heap changed by %d KiB", n, n, size, grown>>10)
	if grown > 8<<20 {
		t.Fatalf("the cache grew by %d MiB for caches of %d entries: memory follows the keys used, not the setting", grown>>20, size)
	}
}
