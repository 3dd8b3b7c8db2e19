package storetest

import (
	crand "crypto/rand"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

func batchOf(rows ...keystore.UsageRow) *keystore.UsageBatch {
	b := &keystore.UsageBatch{Rows: rows, LastUsed: map[string]time.Time{}}
	crand.Read(b.ID[:])
	for _, r := range rows {
		if at := r.Minute.Add(30 * time.Second); at.After(b.LastUsed[r.KeyID]) {
			b.LastUsed[r.KeyID] = at
		}
	}
	return b
}

func row(id, owner string, minute time.Time, c2xx, c4xx int64) keystore.UsageRow {
	r := keystore.UsageRow{KeyID: id, Owner: owner, Minute: minute}
	r.Status[keystore.Class2xx], r.Status[keystore.Class4xx] = c2xx, c4xx
	r.BytesIn, r.BytesOut, r.LatencyMicros = 10*(c2xx+c4xx), 100*(c2xx+c4xx), 1000*(c2xx+c4xx)
	return r
}

func testUsageWriteAndRead(t *testing.T, kind Backend) {
	ctx := Context(t)
	s := Open(t, kind.NewDSN(t), keystore.Options{})
	t0 := time.Date(2026, 11, 29, 10, 58, 0, 0, time.UTC)
	b1 := batchOf(
		row("AAAAAAAAAAAA", "acme", t0, 5, 1),
		row("AAAAAAAAAAAA", "acme", t0.Add(time.Minute), 2, 0),
		row("AAAAAAAAAAAA", "acme", t0.Add(2*time.Minute), 3, 0), // the next hour
		row("BBBBBBBBBBBB", "globex", t0, 7, 0),
		// A duplicate of a row in the same batch: added, not refused.
		row("BBBBBBBBBBBB", "globex", t0, 1, 1),
	)
	if applied, err := s.WriteUsage(ctx, b1); err != nil || !applied {
		t.Fatalf("WriteUsage: %v %v", applied, err)
	}
	// The same batch again changes nothing.
	if applied, err := s.WriteUsage(ctx, b1); err != nil || applied {
		t.Fatalf("WriteUsage of a batch written before: applied %v, %v", applied, err)
	}
	// Another batch adds to existing rows.
	if applied, err := s.WriteUsage(ctx, batchOf(row("AAAAAAAAAAAA", "acme", t0, 1, 0))); err != nil || !applied {
		t.Fatalf("second batch: %v %v", applied, err)
	}

	read := func(q keystore.UsageQuery) []keystore.UsageBucket {
		t.Helper()
		b, err := s.Usage(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	got := read(keystore.UsageQuery{KeyID: "AAAAAAAAAAAA", By: keystore.ByMinute})
	if len(got) != 3 || !got[0].Start.Equal(t0) || got[0].Status[keystore.Class2xx] != 6 || got[0].Status[keystore.Class4xx] != 1 ||
		got[0].Requests() != 7 || got[0].BytesIn != 70 || got[0].BytesOut != 700 || got[0].LatencyMicros != 7000 {
		t.Fatalf("by minute: %+v", got)
	}
	got = read(keystore.UsageQuery{KeyID: "AAAAAAAAAAAA", By: keystore.ByHour})
	if len(got) != 2 || !got[0].Start.Equal(time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)) || got[0].Requests() != 9 || got[1].Requests() != 3 {
		t.Fatalf("by hour: %+v", got)
	}
	got = read(keystore.UsageQuery{By: keystore.ByDay})
	if len(got) != 1 || !got[0].Start.Equal(time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)) || got[0].Requests() != 21 {
		t.Fatalf("everyone by day: %+v", got)
	}
	got = read(keystore.UsageQuery{Owner: "globex", By: keystore.ByDay})
	if len(got) != 1 || got[0].Status[keystore.Class2xx] != 8 || got[0].Status[keystore.Class4xx] != 1 {
		t.Fatalf("owner by day: %+v", got)
	}
	got = read(keystore.UsageQuery{By: keystore.ByMinute, Since: t0.Add(time.Minute)})
	if len(got) != 2 || got[0].Requests() != 2 {
		t.Fatalf("since: %+v", got)
	}
	if _, err := s.Usage(ctx, keystore.UsageQuery{By: "week"}); err == nil {
		t.Fatal("a bucket of a week was accepted")
	}

	// Last use moves forward only.
	if at, err := s.LastUsed(ctx, "AAAAAAAAAAAA"); err != nil || !at.Equal(t0.Add(2*time.Minute+30*time.Second)) {
		t.Fatalf("LastUsed: %v %v", at, err)
	}
	if at, err := s.LastUsed(ctx, "CCCCCCCCCCCC"); err != nil || !at.IsZero() {
		t.Fatalf("LastUsed of an unused key: %v %v", at, err)
	}

	// Pruning: rows before the cut go, and so do old batch records
	// (a pruned batch id would be applied again).
	n, err := s.PruneUsage(ctx, t0.Add(time.Minute), time.Now().Add(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("PruneUsage: %d rows, %v", n, err)
	}
	if got = read(keystore.UsageQuery{By: keystore.ByDay}); len(got) != 1 || got[0].Requests() != 5 {
		t.Fatalf("after pruning: %+v", got)
	}
	if applied, err := s.WriteUsage(ctx, b1); err != nil || !applied {
		t.Fatalf("a batch whose record was pruned: %v %v", applied, err)
	}
}

// Writers with their own connections write overlapping rows in different
// orders at once: no deadlock, and every count lands exactly once.
func testUsageConcurrentWriters(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn := kind.NewDSN(t)
	Open(t, dsn, keystore.Options{})
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	ids := []string{"AAAAAAAAAAAA", "BBBBBBBBBBBB", "CCCCCCCCCCCC", "DDDDDDDDDDDD"}
	const writers, batches = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		s := Open(t, dsn, keystore.Options{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < batches; i++ {
				var rows []keystore.UsageRow
				for _, id := range ids {
					for m := 0; m < 3; m++ {
						rows = append(rows, row(id, "acme", t0.Add(time.Duration(m)*time.Minute), 1, 0))
					}
				}
				rand.Shuffle(len(rows), func(a, b int) { rows[a], rows[b] = rows[b], rows[a] })
				if _, err := s.WriteUsage(ctx, batchOf(rows...)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := Open(t, dsn, keystore.Options{}).Usage(ctx, keystore.UsageQuery{By: keystore.ByMinute})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d buckets", len(got))
	}
	for _, b := range got {
		if want := int64(writers * batches * len(ids)); b.Status[keystore.Class2xx] != want {
			t.Errorf("minute %v: %d requests, want %d", b.Start, b.Status[keystore.Class2xx], want)
		}
	}
}
