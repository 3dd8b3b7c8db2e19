package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
)

// lockKeys holds PostgreSQL's strongest lock on the key table until the
// returned function is called: every key lookup waits for it.
func lockKeys(t *testing.T, dsn string) (unlock func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE keygate_keys IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unlock = func() {
		once.Do(func() {
			tx.Rollback(context.Background())
			conn.Close(context.Background())
			cancel()
		})
	}
	t.Cleanup(unlock)
	return unlock
}

// encodeEntries renders every logged entry, message and fields, as JSON.
func encodeEntries(logs *observer.ObservedLogs) string {
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg", LevelKey: "level", EncodeLevel: zapcore.LowercaseLevelEncoder})
	var b strings.Builder
	for _, e := range logs.All() {
		buf, err := enc.EncodeEntry(e.Entry, e.Context)
		if err != nil {
			fmt.Fprintf(&b, "(unencodable entry %q: %v)\n", e.Message, err)
			continue
		}
		b.Write(buf.Bytes())
		buf.Free()
	}
	return b.String()
}

// TestNoKeyInHandlerLogs sends keys down every path the handler has, at
// debug level, and looks for them in everything it logged: accepted,
// refused each way, out of budget, the client gone mid-lookup, the store
// down, and a lookup that found no query slot.
func TestNoKeyInHandlerLogs(t *testing.T) {
	ts := openTestStore(t, pgtest.NewDatabase(t), []byte(testPepper))
	valid, _ := ts.issue(t, keystore.NewKeyParams{Scopes: []string{"read"}})
	expiring, _ := ts.issue(t, keystore.NewKeyParams{ExpiresAt: time.Now().Add(time.Hour)})
	revoked, rec := ts.issue(t, keystore.NewKeyParams{})
	ts.revoke(t, rec.ID)
	unscoped, _ := ts.issue(t, keystore.NewKeyParams{})
	unknown := ts.unknownKey(t)
	uncached, _ := ts.issue(t, keystore.NewKeyParams{Scopes: []string{"read"}})
	sent := []string{valid, expiring, revoked, unscoped, unknown, uncached}

	sources := []KeySource{{From: FromBearer}, {From: FromHeader, Name: "X-API-Key"}, {From: FromQuery, Name: "k"}, {From: FromCookie, Name: "k"}}
	clk := clock.NewFake(time.Now())
	h := ts.handler(t, &Handler{Sources: sources, Scopes: []string{"read"}, clock: clk,
		FailedAuthLimit: &FailedAuthLimit{Rate: "1/h", Burst: 30, Delay: new(caddy.Duration)}, StoreTimeout: caddy.Duration(300 * time.Millisecond)})
	logs := observe(h)
	waitWatching(t, h)

	serve(h, newRequest("/", bearer(valid)))
	for _, k := range []string{revoked, unscoped, unknown} {
		serve(h, newRequest("/", bearer(k)))
		serve(h, newRequest("/", "X-API-Key: "+k))
		serve(h, newRequest("/?k="+k))
		serve(h, newRequest("/", "Cookie: k="+k))
	}
	for _, k := range malformedKeys(t, valid) {
		if len(k) >= 60 { // the ones that still carry (most of) a secret
			sent = append(sent, k)
		}
		serve(h, newRequest("/", bearer(k)))
	}
	serve(h, newRequest("/", bearer(valid), bearer(unknown)))
	post := newRequest("/", "Cookie: k="+valid, "Sec-Fetch-Site: cross-site")
	post.Method = http.MethodPost
	serve(h, post)
	clk.Advance(2 * time.Hour)
	serve(h, newRequest("/", bearer(expiring)))
	// Past its budget.
	for i := 0; i < 40; i++ {
		serve(h, withClientIP(newRequest("/", bearer(ts.unknownKey(t))), "198.51.100.1"))
	}
	// With the key table locked: a client that leaves mid-lookup, and
	// lookups that time out (a slow store).
	unlock := lockKeys(t, ts.dsn)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	serve(h, newRequest("/", bearer(uncached)).WithContext(ctx))
	cancel()
	serve(h, withClientIP(newRequest("/", bearer(uncached)), "198.51.100.2"))
	unlock()

	// A store that is down.
	down := provision(t, &Handler{Database: "postgres://postgres@127.0.0.1:1/nope?connect_timeout=2", Pepper: testPepper})
	downLogs := observe(down)
	serve(down, newRequest("/", bearer(valid)))
	serve(down, newRequest("/", bearer(unknown)))

	all := encodeEntries(logs) + encodeEntries(downLogs)
	for _, want := range []string{"client went away", "key store unavailable", "client exceeded its budget",
		"malformed API key", "unknown API key", "revoked API key", "expired API key", "lacks required scopes", "cross-origin"} {
		if !strings.Contains(all, want) {
			t.Errorf("no log line says %q: the test missed a path; logs:\n%s", want, all)
		}
	}
	for _, k := range sent {
		for _, s := range []string{k, k[len(k)-49:], k[len(k)-49 : len(k)-30]} {
			if i := strings.Index(all, s); i >= 0 {
				t.Fatalf("the handler logged a key or part of its secret:\n%s", all[max(0, i-200):min(len(all), i+100)])
			}
		}
	}
}

// TestBusySlotAnswers503: a lookup that gets no query slot in time (every
// slot waits for a locked table) fails closed with 503, like an outage:
// never 401, which would tell a real key's owner it is invalid.
func TestBusySlotAnswers503(t *testing.T) {
	ts := openTestStore(t, pgtest.NewDatabase(t), []byte(testPepper))
	real, _ := ts.issue(t, keystore.NewKeyParams{})
	h := ts.handler(t, &Handler{MaxStoreQueries: 1, StoreTimeout: caddy.Duration(10 * time.Second)})
	logs := observe(h)
	waitWatching(t, h)
	unlock := lockKeys(t, ts.dsn)
	// One lookup holds the only slot, 32 fill the queue behind it, each
	// from a client of its own.
	var wg sync.WaitGroup
	for i := range 1 + cache.DefaultQueuedPerQuery {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve(h, withClientIP(newRequest("/", bearer(ts.unknownKey(t))), fmt.Sprintf("192.0.2.%d", 10+i)))
		}()
	}
	for h.verifier.Queued() < cache.DefaultQueuedPerQuery {
		time.Sleep(time.Millisecond)
	}
	s := serve(h, withClientIP(newRequest("/", bearer(real)), "198.51.100.1"))
	checkProblem(t, s, http.StatusServiceUnavailable, CodeStoreUnavailable)
	unlock()
	wg.Wait()
	if busy := h.verifier.Stats.Busy.Load(); busy != 1 {
		t.Errorf("%d lookups counted as busy, want 1", busy)
	}
	if errs := h.verifier.Stats.StoreErrors.Load(); errs != 0 {
		t.Errorf("%d store errors counted, want 0", errs)
	}
	for _, e := range logs.FilterMessageSnippet("key store unavailable").All() {
		t.Errorf("a busy store was logged as unavailable: %s", e.Message)
	}
}

func mustParse(t *testing.T, ts *testStore, key string) keystore.ParsedKey {
	t.Helper()
	p, err := ts.format.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
