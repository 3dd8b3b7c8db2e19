package postgres

import (
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/storetest"
)

// TestConformance runs the key store conformance suite on PostgreSQL,
// each test in a database of its own.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		NewDSN: func(t *testing.T) string { return pgtest.NewDatabase(t) },
		Dump: func(t *testing.T, dsn string) string {
			out, err := exec.Command("pg_dump", "--data-only", dsn).CombinedOutput()
			if err != nil {
				t.Fatalf("pg_dump: %v\n%s", err, out)
			}
			return string(out)
		},
		Exec:      rawExec,
		Bytes:     func(b []byte) string { return fmt.Sprintf(`'\x%x'`, b) },
		AppliedAt: "now()",
		MalformedChanges: []string{
			"NOTIFY keygate_keys, 'garbage'",
			"NOTIFY keygate_keys, ''",
			"SELECT pg_notify('keygate_keys', repeat('ab', 31))",
		},
	})
}

// rawExec runs q on the database directly, on a connection of its own, as
// an operator (or an attacker with write access) would.
func rawExec(t *testing.T, dsn, q string) {
	t.Helper()
	ctx := storetest.Context(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestWatchReconnectResyncs kills the PostgreSQL listening connection: the

// watch must report the outage, reconnect, and ask for a resync, because
// notifications sent in the gap are lost.
func TestWatchReconnectResyncs(t *testing.T) {
	ctx := storetest.Context(t)
	dsn := pgtest.NewDatabase(t)
	s := storetest.Open(t, dsn, keystore.Options{})
	r := storetest.StartWatch(t, s)

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
	r.WaitFor(t, "the outage to be reported", func(r *storetest.Recorder) bool { return r.Downs >= 1 })
	r.WaitFor(t, "the reconnection and resync", func(r *storetest.Recorder) bool { return r.Up && r.Resyncs >= 2 })

	// And it still delivers changes afterwards.
	_, rec, err := testkeys.Issue(ctx, s, storetest.Format(t, ""), storetest.Hasher(t), keystore.NewKeyParams{Name: "after"})
	if err != nil {
		t.Fatal(err)
	}
	r.WaitFor(t, "a change after reconnecting", func(r *storetest.Recorder) bool { return r.Saw(rec.Digest) })
}

// TestNotifyFunctionSearchPath: the trigger function runs with a fixed
// search_path and names pg_notify fully, so that no object another role
// creates in a schema on the caller's search_path (a pg_notify of its own,
// say) is ever called in its place.
func TestNotifyFunctionSearchPath(t *testing.T) {
	ctx := storetest.Context(t)
	dsn := pgtest.NewDatabase(t)
	storetest.Open(t, dsn, keystore.Options{})
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
	dsn := pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := pgtest.NewProxy(t, u.Host)
	u.Host = proxy.Addr
	s := storetest.Open(t, u.String(), keystore.Options{})
	r := storetest.StartWatch(t, s)

	// Idle ping rounds alone must not cause reconnects.
	time.Sleep(5 * listenPing)
	r.Lock()
	downs := r.Downs
	r.Unlock()
	if downs != 0 {
		t.Fatalf("an idle, healthy listener reconnected %d times", downs)
	}

	proxy.Freeze()
	r.WaitFor(t, "the silent loss to be noticed", func(r *storetest.Recorder) bool { return r.Downs >= 1 })
	r.WaitFor(t, "a new connection and a resync", func(r *storetest.Recorder) bool { return r.Up && r.Resyncs >= 2 })
}

// TestLookupSurvivesTerminatedConnections: pooled connections killed by
// the server cost no failed lookup; the query is retried on a fresh one.
func TestLookupSurvivesTerminatedConnections(t *testing.T) {
	ctx := storetest.Context(t)
	dsn := pgtest.NewDatabase(t)
	s := storetest.Open(t, dsn, keystore.Options{})
	_, rec, err := testkeys.Issue(ctx, s, storetest.Format(t, ""), storetest.Hasher(t), keystore.NewKeyParams{Name: "a"})
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

func TestOpenPostgresPermanentErrors(t *testing.T) {
	base := pgtest.NewDatabase(t)
	ctx := storetest.Context(t)
	missing := strings.Replace(base, "/keygate_test_", "/keygate_nonexistent_", 1)
	if _, err := keystore.Open(ctx, missing, keystore.Options{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open of a missing database: %v", err)
	}
}
