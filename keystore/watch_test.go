package keystore

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
)

// recorder is a ChangeHandler that remembers what it was told.
type recorder struct {
	mu        sync.Mutex
	changed   []Digest
	resyncs   int
	malformed int
	healthy   bool
	downs     int
	signal    chan struct{}
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{}, 100)} }

func (r *recorder) KeyChanged(d Digest) { r.do(func() { r.changed = append(r.changed, d) }) }
func (r *recorder) Resync()             { r.do(func() { r.resyncs++ }) }
func (r *recorder) MalformedChange()    { r.do(func() { r.malformed++ }) }
func (r *recorder) Healthy(ok bool, err error) {
	r.do(func() {
		r.healthy = ok
		if !ok {
			r.downs++
		}
	})
}

func (r *recorder) do(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// waitFor polls cond (under the lock) until it holds or 10s pass.
func (r *recorder) waitFor(t *testing.T, what string, cond func(r *recorder) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond(r)
		r.mu.Unlock()
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

func (r *recorder) saw(d Digest) bool {
	for _, c := range r.changed {
		if c == d {
			return true
		}
	}
	return false
}

func startWatch(t *testing.T, s Store) *recorder {
	r := newRecorder()
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
	r.waitFor(t, "the watch to start", func(r *recorder) bool { return r.healthy && r.resyncs == 1 })
	return r
}

// TestWatchSeesChangesFromOtherProcesses: a second Store on the same
// database stands in for the CLI in another process.
func TestWatchSeesChangesFromOtherProcesses(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		dsn := kind.newDSN(t)
		h := testHasher(t)
		gateway := openT(t, dsn, Options{})
		cli := openT(t, dsn, Options{})
		r := startWatch(t, gateway)

		_, rec, err := issueKey(ctx, cli, mustFormat(t, ""), h, NewKeyParams{Name: "a"})
		if err != nil {
			t.Fatal(err)
		}
		r.waitFor(t, "the creation", func(r *recorder) bool { return r.saw(rec.Digest) })
		r.mu.Lock()
		r.changed = nil
		r.mu.Unlock()
		start := time.Now()
		if _, _, err := revokeAt(ctx, cli, rec.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		r.waitFor(t, "the revocation", func(r *recorder) bool { return r.saw(rec.Digest) })
		t.Logf("revocation seen after %v", time.Since(start))
	})
}

// TestWatchIgnoresMalformedChanges: a notification or change log row that
// is not a key digest (anyone who can connect may NOTIFY keygate_keys) is
// counted and dropped; it must not purge every cache, and changes after
// it still arrive.
func TestWatchIgnoresMalformedChanges(t *testing.T) {
	inject := map[string][]string{
		"postgres": {
			"NOTIFY keygate_keys, 'garbage'",
			"NOTIFY keygate_keys, ''",
			"SELECT pg_notify('keygate_keys', repeat('ab', 31))",
		},
		"sqlite": {
			"INSERT INTO keygate_key_changes (digest, changed_at) VALUES (x'01', 0)",
			"INSERT INTO keygate_key_changes (digest, changed_at) VALUES (x'', 0)",
			"INSERT INTO keygate_key_changes (digest, changed_at) VALUES (zeroblob(33), 0)",
		},
	}
	forEachStore(t, func(t *testing.T, kind storeKind) {
		ctx := ctxT(t)
		dsn := kind.newDSN(t)
		s := openT(t, dsn, Options{})
		r := startWatch(t, s)
		for _, q := range inject[kind.name] {
			rawExec(t, kind.name, dsn, q)
		}
		_, rec, err := issueKey(ctx, s, mustFormat(t, ""), testHasher(t), NewKeyParams{Name: "after"})
		if err != nil {
			t.Fatal(err)
		}
		r.waitFor(t, "the change after the malformed ones", func(r *recorder) bool { return r.saw(rec.Digest) })
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.resyncs != 1 || r.malformed != len(inject[kind.name]) || len(r.changed) != 1 {
			t.Fatalf("after %d malformed changes and one key change: %d resyncs (want 1, the start), "+
				"%d malformed (want %d), %d key changes", len(inject[kind.name]), r.resyncs, r.malformed,
				len(inject[kind.name]), len(r.changed))
		}
	})
}

// TestWatchReconnectResyncs kills the PostgreSQL listening connection: the
// watch must report the outage, reconnect, and ask for a resync, because
// notifications sent in the gap are lost.
func TestWatchReconnectResyncs(t *testing.T) {
	kind := storeKinds[1]
	ctx := ctxT(t)
	dsn := kind.newDSN(t)
	s := openT(t, dsn, Options{})
	r := startWatch(t, s)

	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	tag, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN `+notifyChannel+`'`)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("terminating the listener: %v (%d rows)", err, tag.RowsAffected())
	}
	r.waitFor(t, "the outage to be reported", func(r *recorder) bool { return r.downs >= 1 })
	r.waitFor(t, "the reconnection and resync", func(r *recorder) bool { return r.healthy && r.resyncs >= 2 })

	// And it still delivers changes afterwards.
	_, rec, err := issueKey(ctx, s, mustFormat(t, ""), testHasher(t), NewKeyParams{Name: "after"})
	if err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "a change after reconnecting", func(r *recorder) bool { return r.saw(rec.Digest) })
}

// TestNotifyFunctionSearchPath: the trigger function runs with a fixed
// search_path and names pg_notify fully, so that no object another role
// creates in a schema on the caller's search_path (a pg_notify of its own,
// say) is ever called in its place.
func TestNotifyFunctionSearchPath(t *testing.T) {
	ctx := ctxT(t)
	dsn := storeKinds[1].newDSN(t)
	openT(t, dsn, Options{})
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var config []string
	var src string
	if err := conn.QueryRow(ctx, "SELECT coalesce(proconfig, '{}'), prosrc FROM pg_proc WHERE proname = 'keygate_notify_key_change'").Scan(&config, &src); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(config, "search_path=pg_catalog, pg_temp") {
		t.Errorf("keygate_notify_key_change runs with settings %q, want search_path=pg_catalog, pg_temp", config)
	}
	if strings.Count(src, "pg_catalog.pg_notify(") != 2 || strings.Count(src, "pg_notify(") != 2 {
		t.Errorf("keygate_notify_key_change does not call pg_catalog.pg_notify by its full name:\n%s", src)
	}
}

// TestWatchDetectsSilentConnectionLoss: a listener whose connection goes
// silent (a partition: no FIN, no RST, nothing) must notice through its
// periodic ping, report the outage and reconnect, even though no
// notification or error ever arrives on the old connection.
func TestWatchDetectsSilentConnectionLoss(t *testing.T) {
	old := listenPing
	listenPing = 100 * time.Millisecond
	t.Cleanup(func() { listenPing = old })
	dsn := storeKinds[1].newDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := pgtest.NewProxy(t, u.Host)
	u.Host = proxy.Addr
	s := openT(t, u.String(), Options{})
	r := startWatch(t, s)

	// Idle ping rounds alone must not cause reconnects.
	time.Sleep(5 * listenPing)
	r.mu.Lock()
	downs := r.downs
	r.mu.Unlock()
	if downs != 0 {
		t.Fatalf("an idle, healthy listener reconnected %d times", downs)
	}

	proxy.Freeze()
	r.waitFor(t, "the silent loss to be noticed", func(r *recorder) bool { return r.downs >= 1 })
	r.waitFor(t, "a new connection and a resync", func(r *recorder) bool { return r.healthy && r.resyncs >= 2 })
}

func TestSQLiteChangeLogGapResyncs(t *testing.T) {
	ctx := ctxT(t)
	dsn := storeKinds[0].newDSN(t)
	s := openT(t, dsn, Options{}).(*sqliteStore)
	r := newRecorder()
	h := testHasher(t)
	_, a, _ := issueKey(ctx, s, mustFormat(t, ""), h, NewKeyParams{Name: "a"})
	_, b, _ := issueKey(ctx, s, mustFormat(t, ""), h, NewKeyParams{Name: "b"})
	// Pretend we saw nothing since seq 0 and the log lost entry 1.
	if _, err := s.db.ExecContext(ctx, "DELETE FROM keygate_key_changes WHERE seq = 1"); err != nil {
		t.Fatal(err)
	}
	last, err := s.pollChanges(ctx, r, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.resyncs != 1 || !r.saw(b.Digest) || r.saw(a.Digest) || last != 2 {
		t.Fatalf("gap: resyncs %d, last %d, changes %d", r.resyncs, last, len(r.changed))
	}
}

// TestLookupSurvivesTerminatedConnections: pooled connections killed by
// the server cost no failed lookup; the query is retried on a fresh one.
func TestLookupSurvivesTerminatedConnections(t *testing.T) {
	ctx := ctxT(t)
	dsn := storeKinds[1].newDSN(t)
	s := openT(t, dsn, Options{})
	_, rec, err := issueKey(ctx, s, mustFormat(t, ""), testHasher(t), NewKeyParams{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for i := 0; i < 5; i++ {
		if _, err := s.Lookup(ctx, rec.Digest); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		tag, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'keygate'`)
		if err != nil || tag.RowsAffected() == 0 {
			t.Fatalf("terminating gateway connections: %v (%d)", err, tag.RowsAffected())
		}
	}
}

// TestWatchBackoffResetsAfterHealthySession: only consecutive failures to
// establish a watch slow reconnection down; a watch that worked and was
// cut comes back after the minimum wait, however often it is cut.
func TestWatchBackoffResetsAfterHealthySession(t *testing.T) {
	r := newRecorder()
	var starts []time.Time
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchLoop(ctx, r, func(ctx context.Context, h ChangeHandler) error {
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
	r.waitFor(t, "eight sessions", func(*recorder) bool {
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
