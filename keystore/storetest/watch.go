package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
)

// Recorder is a keystore.ChangeHandler that remembers what it was told.
// Lock it to read its fields.
type Recorder struct {
	sync.Mutex
	Changed   []keystore.Digest
	Resyncs   int
	Malformed int
	Up        bool // as last reported to Healthy
	Downs     int  // reports of Healthy(false, …)
	signal    chan struct{}
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{signal: make(chan struct{}, 100)} }

func (r *Recorder) KeyChanged(d keystore.Digest) { r.do(func() { r.Changed = append(r.Changed, d) }) }
func (r *Recorder) Resync()                      { r.do(func() { r.Resyncs++ }) }
func (r *Recorder) MalformedChange()             { r.do(func() { r.Malformed++ }) }
func (r *Recorder) Healthy(ok bool, err error) {
	r.do(func() {
		r.Up = ok
		if !ok {
			r.Downs++
		}
	})
}

func (r *Recorder) do(f func()) {
	r.Lock()
	f()
	r.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// WaitFor polls cond (under the lock) until it holds or 10s pass.
func (r *Recorder) WaitFor(t *testing.T, what string, cond func(r *Recorder) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.Lock()
		ok := cond(r)
		r.Unlock()
		if ok {
			return
		}
		select {
		case <-r.signal:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Saw reports whether r was told that the key with digest d changed;
// lock r first.
func (r *Recorder) Saw(d keystore.Digest) bool {
	for _, c := range r.Changed {
		if c == d {
			return true
		}
	}
	return false
}

// StartWatch watches s with a new Recorder until the test ends, and
// returns the Recorder once the watch is established.
func StartWatch(t *testing.T, s keystore.Store) *Recorder {
	r := NewRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, r)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	r.WaitFor(t, "the watch to start", func(r *Recorder) bool { return r.Up && r.Resyncs == 1 })
	return r
}

// testWatchSeesChangesFromOtherProcesses: a second Store on the same
// database stands in for the CLI in another process.
func testWatchSeesChangesFromOtherProcesses(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn := kind.NewDSN(t)
	h := Hasher(t)
	gateway := Open(t, dsn, keystore.Options{})
	cli := Open(t, dsn, keystore.Options{})
	r := StartWatch(t, gateway)

	_, rec, err := testkeys.Issue(ctx, cli, Format(t, ""), h, keystore.NewKeyParams{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	r.WaitFor(t, "the creation", func(r *Recorder) bool { return r.Saw(rec.Digest) })
	r.Lock()
	r.Changed = nil
	r.Unlock()
	start := time.Now()
	if _, _, err := revokeAt(ctx, cli, rec.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	r.WaitFor(t, "the revocation", func(r *Recorder) bool { return r.Saw(rec.Digest) })
	t.Logf("revocation seen after %v", time.Since(start))
}

// testWatchIgnoresMalformedChanges: a notification or change log row that
// is not a key digest (anyone who can connect may NOTIFY keygate_keys) is
// counted and dropped; it must not purge every cache, and changes after
// it still arrive.
func testWatchIgnoresMalformedChanges(t *testing.T, kind Backend) {
	ctx := Context(t)
	dsn := kind.NewDSN(t)
	s := Open(t, dsn, keystore.Options{})
	r := StartWatch(t, s)
	for _, q := range kind.MalformedChanges {
		kind.Exec(t, dsn, q)
	}
	_, rec, err := testkeys.Issue(ctx, s, Format(t, ""), Hasher(t), keystore.NewKeyParams{Name: "after"})
	if err != nil {
		t.Fatal(err)
	}
	r.WaitFor(t, "the change after the malformed ones", func(r *Recorder) bool { return r.Saw(rec.Digest) })
	r.Lock()
	defer r.Unlock()
	if r.Resyncs != 1 || r.Malformed != len(kind.MalformedChanges) || len(r.Changed) != 1 {
		t.Fatalf("after %d malformed changes and one key change: %d resyncs (want 1, the start), "+
			"%d malformed (want %d), %d key changes", len(kind.MalformedChanges), r.Resyncs, r.Malformed,
			len(kind.MalformedChanges), len(r.Changed))
	}
}
