package tests

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// revocationTarget is the documented bound: a revocation is refused by
// every gateway within a second of `caddy api-key revoke` returning. The
// tests report each time against it; they do not fail on it, because on a
// loaded 2-core machine running race-built gateways in parallel it
// measures the machine more than the code.
const revocationTarget = time.Second

// revocationLimit is what the tests assert: far below the cache TTL they
// use (an hour), so that only a delivered invalidation (or a resync after
// a lost one) can meet it, and far above what a busy machine adds.
const revocationLimit = 10 * time.Second

// targetNote says how a revocation time compares with revocationTarget.
func targetNote(took time.Duration) string {
	if took <= revocationTarget {
		return "within the 1s target"
	}
	return "OVER the 1s target (a loaded machine; the limit asserted is 10s)"
}

// longCache makes cached keys trusted for an hour: only invalidation (or
// the degraded TTL while the watch is down) can make a change visible.
const longCache = "cache {\n\t\t\tttl 1h\n\t\t}"

// pgSandbox is a sandbox whose store is the PostgreSQL database dsn with
// the given pepper, for a second gateway on the same database or for a
// database on a private cluster. Its directories are its own.
func pgSandbox(t *testing.T, dsn, pepper string) *sandbox {
	t.Helper()
	sb := newSandbox(t, sqliteStore)
	sb.kind = postgresStore
	sb.dsn = dsn
	sb.pepper = pepper
	sb.setenv("KEYGATE_DATABASE", dsn)
	sb.setenv("KEYGATE_PEPPER", pepper)
	return sb
}

// listenerUp reports whether g's last word about its key change watch is
// that it is watching.
func listenerUp(g *gateway) bool {
	log := g.log()
	return strings.LastIndex(log, watchingLog) > strings.LastIndex(log, "key change watch interrupted")
}

const (
	storeQueriesMetric = "caddy_api_key_store_queries_total"
	purgesMetric       = "caddy_api_key_cache_purges_total"
	resyncsMetric      = "caddy_api_key_watch_resyncs_total"
	staleMetric        = `caddy_api_key_cache_lookups_total{result="stale"}`
)

// ensureCached makes g cache key: it sends it until a request that is
// accepted costs no store query. Nothing else may use g meanwhile. It
// returns when the request that filled the cache had been answered: the
// entry was read from the store before that.
func ensureCached(t testing.TB, g *gateway, name, key string) time.Time {
	t.Helper()
	prev := -1.0
	var filled time.Time
	for range 20 {
		wantUpstream(t, name, bearer(t, g.url+"/", key))
		answered := time.Now()
		q := metric(t, g, storeQueriesMetric)
		if q == prev {
			return filled
		}
		prev, filled = q, answered
	}
	t.Fatalf("%s: every request still queries the store after 20 tries", name)
	return time.Time{}
}

// refusal is how a revocation became visible, as timeRefusal saw it.
type refusal struct {
	took    time.Duration   // until every gateway refused the key
	lastOK  []time.Duration // per gateway: when its last acceptance was answered
	slowest time.Duration   // the slowest poll
}

func (r refusal) String() string {
	return fmt.Sprintf("last accepted at %v, slowest poll %v", roundAll(r.lastOK), r.slowest.Round(time.Millisecond))
}

// timeRefusal polls every gateway every 5ms until each has refused key
// (401); it measures from start. It gives up after limit and then reports
// false. Any answer but 200 or 401 fails the test.
func timeRefusal(t testing.TB, gws []*gateway, name, key string, start time.Time, limit time.Duration) (refusal, bool) {
	t.Helper()
	res := refusal{lastOK: make([]time.Duration, len(gws))}
	refused := make([]bool, len(gws))
	left := len(gws)
	for {
		for i, g := range gws {
			if refused[i] {
				continue
			}
			sent := time.Now()
			r := bearer(t, g.url+"/", key)
			res.slowest = max(res.slowest, time.Since(sent))
			switch r.status {
			case http.StatusUnauthorized:
				refused[i] = true
				left--
			case http.StatusOK:
				res.lastOK[i] = time.Since(start)
			default:
				t.Fatalf("%s on gateway %d: status %d while waiting for the revocation; body %s", name, i, r.status, r.body)
			}
		}
		res.took = time.Since(start)
		if left == 0 {
			return res, true
		}
		if res.took > limit {
			return res, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// distribution renders min, median, p99 and max of ds.
func distribution(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	p99 := s[min(len(s)-1, (len(s)*99+99)/100-1)]
	return fmt.Sprintf("n=%d min=%v median=%v p99=%v max=%v", len(s), s[0].Round(time.Microsecond),
		s[len(s)/2].Round(time.Microsecond), p99.Round(time.Microsecond), s[len(s)-1].Round(time.Microsecond))
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// connectDB opens a connection to a test database, closed when t ends.
func connectDB(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to %s: %v", dsn, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// queryInt runs a query that returns one integer.
func queryInt(t testing.TB, conn *pgx.Conn, q string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// The key change listeners of the gateways on the connection's database:
// sessions whose last query was the LISTEN. (A listener that went 5s
// without a notification has pinged since and no longer matches.)
const (
	listenersWhere  = "datname = current_database() AND pid <> pg_backend_pid() AND query = 'LISTEN keygate_keys'"
	countListeners  = "SELECT count(*) FROM pg_stat_activity WHERE " + listenersWhere
	gatewaySessions = "datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'keygate'"
)

// terminate ends the sessions that match where (in the select list, so
// that only rows that passed the filter are terminated) and returns how
// many it ended.
func terminate(t testing.TB, conn *pgx.Conn, where string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "+where)
	if err != nil {
		t.Fatalf("terminating sessions: %v", err)
	}
	ended, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil {
		t.Fatalf("terminating sessions: %v", err)
	}
	n := 0
	for _, ok := range ended {
		if ok {
			n++
		}
	}
	return n
}

// waitListeners waits until n listeners are connected to conn's database.
func waitListeners(t testing.TB, conn *pgx.Conn, n int, limit time.Duration) {
	t.Helper()
	var got int
	if ok, _ := pollUntil(limit, 10*time.Millisecond, func() bool {
		got = queryInt(t, conn, countListeners)
		return got == n
	}); !ok {
		t.Fatalf("%d key change listeners connected after %v, want %d", got, limit, n)
	}
}

// revocationFixture is gateways sharing one PostgreSQL database.
type revocationFixture struct {
	sb  *sandbox // the first gateway's, for the CLI
	gws []*gateway
	db  *pgx.Conn // to the shared database
}

// newRevocationFixture starts n gateways, each a Caddy process with a
// sandbox of its own, on one database and pepper, with an hour-long
// cache, and waits until each watches the store.
func newRevocationFixture(t *testing.T, n int) *revocationFixture {
	t.Helper()
	f := &revocationFixture{sb: newSandbox(t, postgresStore)}
	up := newUpstream(t)
	for i := range n {
		sb := f.sb
		if i > 0 {
			sb = pgSandbox(t, f.sb.dsn, f.sb.pepper)
		}
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, longCache))
		f.gws = append(f.gws, g)
	}
	for _, g := range f.gws {
		waitForLog(t, g, watchingLog, 1, startTimeout)
	}
	f.db = connectDB(t, f.sb.dsn)
	return f
}

// revokeAndTime issues a key with the CLI, makes every gateway cache it,
// optionally kills the gateways' listeners (once they are all connected),
// revokes the key with the CLI and returns how long after the revoke
// command returned every gateway refused it. It fails the test unless
// that is within revocationLimit.
func (f *revocationFixture) revokeAndTime(t *testing.T, name string, killListeners bool) time.Duration {
	t.Helper()
	k := f.sb.createKey(name)
	if killListeners {
		// The previous kill's listeners may still be waiting to
		// reconnect; cache only then, so that their purge does not undo it.
		waitListeners(t, f.db, len(f.gws), 15*time.Second)
	}
	filled := make([]time.Time, len(f.gws))
	for gi, g := range f.gws {
		filled[gi] = ensureCached(t, g, k.Name, k.Key)
	}
	if killListeners {
		if killed := terminate(t, f.db, listenersWhere); killed != len(f.gws) {
			t.Fatalf("%s: terminated %d listening sessions, want %d (one per gateway)", k.Name, killed, len(f.gws))
		}
	}
	f.sb.revoke(k.ID)
	revoked := time.Now()
	res, ok := timeRefusal(t, f.gws, k.Name, k.Key, revoked, revocationLimit)
	t.Logf("%s: refused by every gateway %v after the revoke command returned, %s", k.Name, res.took.Round(time.Millisecond), targetNote(res.took))
	if !ok {
		cachedFor := make([]time.Duration, len(f.gws))
		for gi := range f.gws {
			cachedFor[gi] = revoked.Sub(filled[gi])
		}
		t.Fatalf("%s: not refused by every gateway %v after the revoke command returned; "+
			"the entries had been read %v before it returned; %s", k.Name, res.took, roundAll(cachedFor), res)
	}
	// A refusal is final: nothing may bring the key back.
	for gi, g := range f.gws {
		wantStatus(t, fmt.Sprintf("%s on gateway %d after refusal", k.Name, gi), bearer(t, g.url+"/", k.Key), http.StatusUnauthorized)
	}
	return res.took
}

// counters reads one counter of every gateway.
func (f *revocationFixture) counters(t *testing.T, series string) []float64 {
	t.Helper()
	out := make([]float64, len(f.gws))
	for i, g := range f.gws {
		out[i] = metric(t, g, series)
	}
	return out
}

// wantRise waits until the counter of every gateway has risen by at least
// n since before.
func (f *revocationFixture) wantRise(t *testing.T, series string, before []float64, n int, why string) {
	t.Helper()
	for i, g := range f.gws {
		var got float64
		if ok, _ := pollUntil(5*time.Second, 20*time.Millisecond, func() bool {
			got = metric(t, g, series)
			return got-before[i] >= float64(n)
		}); !ok {
			t.Errorf("gateway %d: %s went from %v to %v, want +%d at least (%s)", i, series, before[i], got, n, why)
		}
	}
}

// freshListeners makes sure every gateway's listener can be recognised
// by its last query: one that went 5s without a notification has pinged
// since, so then every gateway session is ended once to start afresh.
func (f *revocationFixture) freshListeners(t *testing.T) {
	t.Helper()
	if got := queryInt(t, f.db, countListeners); got != len(f.gws) {
		t.Logf("%d listeners recognisable; terminating every gateway session once", got)
		terminate(t, f.db, gatewaySessions)
	}
}

func TestRevocationReachesEveryInstance(t *testing.T) {
	t.Parallel()
	f := newRevocationFixture(t, 2)
	const n = 10
	var notified []time.Duration
	for i := range n {
		notified = append(notified, f.revokeAndTime(t, fmt.Sprintf("revoked %d", i), false))
	}
	t.Logf("revocation refused by both gateways, listeners up: %s (in order: %v)", distribution(notified), roundAll(notified))

	// Once more with both listeners killed just before the revocation:
	// the notification is lost, and the reconnection's resync (a purge)
	// must make up for it.
	f.freshListeners(t)
	waitListeners(t, f.db, len(f.gws), 15*time.Second)
	before := f.counters(t, purgesMetric)
	took := f.revokeAndTime(t, "revoked with the listeners killed", true)
	t.Logf("revocation refused by both gateways, listeners killed just before: %v", took.Round(time.Microsecond))
	waitListeners(t, f.db, len(f.gws), 15*time.Second)
	f.wantRise(t, purgesMetric, before, 1, "the reconnection's resync")
}

func TestSQLiteCLIRevocationSeenWithinASecond(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	g := newGateway(t, sb)
	g.start(apiKeySite(g, up, longCache))
	waitForLog(t, g, watchingLog, 1, startTimeout)

	k := sb.createKey("revoked by another process")
	ensureCached(t, g, k.Name, k.Key)
	sb.revoke(k.ID)
	res, ok := timeRefusal(t, []*gateway{g}, k.Name, k.Key, time.Now(), revocationLimit)
	if !ok {
		t.Fatalf("key revoked by the CLI not refused %v after the command returned; %s", res.took, res)
	}
	wantStatus(t, "revoked key after refusal", bearer(t, g.url+"/", k.Key), http.StatusUnauthorized)
	t.Logf("SQLite: revocation by the CLI refused %v after the command returned, %s", res.took.Round(time.Microsecond), targetNote(res.took))
}
