package usage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// memStore applies batches as a key store does: a batch id it has seen
// is not applied again. failNext makes writes fail: before applying
// (the store was down) or after (the commit happened, the answer was
// lost).
type memStore struct {
	mu       sync.Mutex
	seen     map[[16]byte]bool
	rows     map[string]*keystore.UsageCounts // key id + minute
	lastUsed map[string]time.Time
	ids      [][16]byte // every write attempt, in order
	failNext int
	afterApp bool // failures happen after applying
}

func newMemStore() *memStore {
	return &memStore{seen: map[[16]byte]bool{}, rows: map[string]*keystore.UsageCounts{}, lastUsed: map[string]time.Time{}}
}

var errDown = errors.New("store down")

func (m *memStore) WriteUsage(_ context.Context, b *keystore.UsageBatch) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids = append(m.ids, b.ID)
	fail := m.failNext > 0
	if fail {
		m.failNext--
		if !m.afterApp {
			return false, errDown
		}
	}
	applied := !m.seen[b.ID]
	if applied {
		m.seen[b.ID] = true
		for _, r := range b.Rows {
			k := r.KeyID + r.Minute.Format(time.RFC3339)
			if m.rows[k] == nil {
				m.rows[k] = &keystore.UsageCounts{}
			}
			m.rows[k].Add(&r.UsageCounts)
		}
		for id, at := range b.LastUsed {
			if at.After(m.lastUsed[id]) {
				m.lastUsed[id] = at
			}
		}
	}
	if fail {
		return false, errors.New("connection lost during COMMIT")
	}
	return applied, nil
}

func (m *memStore) total() (n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.rows {
		n += c.Requests()
	}
	return n
}

func (m *memStore) get(id string, minute time.Time) keystore.UsageCounts {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.rows[id+minute.Format(time.RFC3339)]; c != nil {
		return *c
	}
	return keystore.UsageCounts{}
}

// newRecorder makes a recorder whose own flushes never run: the test
// flushes.
func newRecorder(t *testing.T, w Writer, max int64) *Recorder {
	r := New(w, Config{FlushInterval: time.Hour, MaxBuffered: max})
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func TestRecordAndFlush(t *testing.T) {
	m := newMemStore()
	r := newRecorder(t, m, 0)
	r.Record("A", "acme", t0.Add(time.Second), 200, 10, 100, 3*time.Millisecond)
	r.Record("A", "acme", t0.Add(59*time.Second), 404, 0, 50, time.Millisecond)
	r.Record("A", "acme", t0.Add(61*time.Second), 502, 0, 0, 10*time.Millisecond)
	r.Record("B", "", t0.Add(2*time.Second), 101, 0, 0, 0)
	r.Record("B", "", t0.Add(3*time.Second), 0, 0, 0, 0) // no valid status: 5xx
	if r.Buffered() != 3 {
		t.Fatalf("%d rows buffered, want 3", r.Buffered())
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := m.get("A", t0)
	if a.Status != [5]int64{0, 1, 0, 1, 0} || a.BytesIn != 10 || a.BytesOut != 150 || a.LatencyMicros != 4000 {
		t.Errorf("A, first minute: %+v", a)
	}
	if a2 := m.get("A", t0.Add(time.Minute)); a2.Status != [5]int64{0, 0, 0, 0, 1} {
		t.Errorf("A, second minute: %+v", a2)
	}
	if b := m.get("B", t0); b.Status != [5]int64{1, 0, 0, 0, 1} {
		t.Errorf("B: %+v", b)
	}
	if !m.lastUsed["A"].Equal(t0.Add(61*time.Second)) || !m.lastUsed["B"].Equal(t0.Add(3*time.Second)) {
		t.Errorf("last used: %v", m.lastUsed)
	}
	if r.Buffered() != 0 || r.Stats.Recorded.Load() != 5 || r.Stats.Written.Load() != 5 || r.Stats.Batches.Load() != 1 {
		t.Errorf("after flush: buffered %d, stats recorded %d written %d batches %d",
			r.Buffered(), r.Stats.Recorded.Load(), r.Stats.Written.Load(), r.Stats.Batches.Load())
	}
	// Nothing to write: no write.
	if err := r.Flush(context.Background()); err != nil || len(m.ids) != 1 {
		t.Fatalf("empty flush: %v, %d writes", err, len(m.ids))
	}
}

// While the store is down, the batch that failed is written again with
// the same id, and counts made meanwhile add up in memory, one row per key
// and minute.
func TestOutageKeepsCounts(t *testing.T) {
	m := newMemStore()
	r := newRecorder(t, m, 0)
	r.Record("A", "", t0, 200, 0, 0, 0)
	m.failNext = 3
	for i := 0; i < 3; i++ {
		if err := r.Flush(context.Background()); !errors.Is(err, errDown) {
			t.Fatalf("flush %d during the outage: %v", i, err)
		}
		for j := 0; j < 100; j++ {
			r.Record("A", "", t0.Add(time.Duration(j)*100*time.Millisecond), 200, 0, 0, 0)
		}
	}
	if r.Buffered() != 1+1 {
		// The pending batch's row, and one row of counts since.
		t.Fatalf("%d rows buffered during the outage, want 2", r.Buffered())
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.ids[0] != m.ids[1] || m.ids[1] != m.ids[2] || m.ids[2] != m.ids[3] || m.ids[4] == m.ids[3] {
		t.Errorf("batch ids of the attempts: %x", m.ids)
	}
	if got := m.total(); got != 301 {
		t.Fatalf("stored %d requests, want 301", got)
	}
	if r.Buffered() != 0 || r.Stats.WriteErrors.Load() != 3 || r.Stats.Written.Load() != 301 {
		t.Errorf("buffered %d, write errors %d, written %d", r.Buffered(), r.Stats.WriteErrors.Load(), r.Stats.Written.Load())
	}
}

// A write whose commit happened but whose answer was lost is retried,
// and the store recognises the batch: counted once.
func TestAmbiguousCommitCountsOnce(t *testing.T) {
	m := newMemStore()
	m.afterApp = true
	r := newRecorder(t, m, 0)
	for i := 0; i < 10; i++ {
		r.Record("A", "", t0, 200, 0, 0, 0)
	}
	m.failNext = 1
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("the lost answer was not an error")
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := m.total(); got != 10 {
		t.Fatalf("stored %d requests, want 10", got)
	}
	if r.Stats.Duplicates.Load() != 1 || r.Stats.Written.Load() != 10 {
		t.Errorf("duplicates %d, written %d", r.Stats.Duplicates.Load(), r.Stats.Written.Load())
	}
}

// Past the bound, requests needing a new row are dropped and counted;
// rows that exist keep counting.
func TestBufferBound(t *testing.T) {
	m := newMemStore()
	r := newRecorder(t, m, 3)
	for _, id := range []string{"A", "B", "C", "D", "E"} {
		r.Record(id, "", t0, 200, 0, 0, 0)
	}
	r.Record("A", "", t0, 200, 0, 0, 0)
	if r.Buffered() != 3 || r.Stats.Dropped.Load() != 2 || r.Stats.Recorded.Load() != 4 {
		t.Fatalf("buffered %d, dropped %d, recorded %d", r.Buffered(), r.Stats.Dropped.Load(), r.Stats.Recorded.Load())
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.total() != 4 || m.get("A", t0).Requests() != 2 {
		t.Fatalf("stored %d", m.total())
	}
	// Room again after the flush.
	r.Record("D", "", t0, 200, 0, 0, 0)
	if r.Stats.Dropped.Load() != 2 || r.Buffered() != 1 {
		t.Fatalf("after the flush: dropped %d, buffered %d", r.Stats.Dropped.Load(), r.Buffered())
	}
}

func TestCloseWritesTheRest(t *testing.T) {
	m := newMemStore()
	r := New(m, Config{FlushInterval: time.Hour})
	r.Record("A", "", t0, 200, 0, 0, 0)
	m.failNext = 2 // the store comes back while Close retries
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if m.total() != 1 {
		t.Fatalf("stored %d", m.total())
	}

	// The store never comes back: what is left is counted as dropped.
	m = newMemStore()
	r = New(m, Config{FlushInterval: time.Hour})
	for i := 0; i < 7; i++ {
		r.Record("A", "", t0, 200, 0, 0, 0)
	}
	m.failNext = 1 << 30
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.Close(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("Close with the store down: %v", err)
	}
	if r.Stats.Dropped.Load() != 7 || r.Buffered() != 0 {
		t.Fatalf("dropped %d, buffered %d", r.Stats.Dropped.Load(), r.Buffered())
	}
}

// Requests recorded from many goroutines while flushes run are each
// written exactly once.
func TestConcurrentRecordAndFlush(t *testing.T) {
	m := newMemStore()
	r := New(m, Config{FlushInterval: time.Millisecond})
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := []string{"A", "B", "C"}
			for i := 0; i < each; i++ {
				r.Record(ids[i%3], "", t0.Add(time.Duration(i)*time.Second), 200+100*(i%4), 1, 2, time.Microsecond)
			}
		}()
	}
	wg.Wait()
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := m.total(); got != workers*each {
		t.Fatalf("stored %d requests, want %d", got, workers*each)
	}
	if r.Stats.Written.Load() != workers*each || r.Stats.Dropped.Load() != 0 {
		t.Fatalf("written %d, dropped %d", r.Stats.Written.Load(), r.Stats.Dropped.Load())
	}
}

// BenchmarkRecord is the request path's cost: an existing row.
func BenchmarkRecord(b *testing.B) {
	r := New(newMemStore(), Config{FlushInterval: time.Hour})
	defer r.Close(context.Background())
	ids := []string{"AAAAAAAAAAAA", "BBBBBBBBBBBB", "CCCCCCCCCCCC", "DDDDDDDDDDDD"}
	at := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Record(ids[i%4], "acme", at, 200, 100, 1000, time.Millisecond)
			i++
		}
	})
}
