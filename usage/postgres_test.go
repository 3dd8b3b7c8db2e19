package usage

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
	_ "github.com/keygate/keygate/keystore/postgres"
)

// TestAmbiguousCommitOnPostgres: the connection is cut after PostgreSQL
// committed a batch and before the recorder heard of it. The recorder
// writes the batch again, with the same id, on a new connection, and the
// store counts it once.
func TestAmbiguousCommitOnPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := pgtest.NewProxy(t, u.Host)
	u.Host = proxy.Addr
	q := u.Query()
	q.Set("sslmode", "disable") // the proxy reads the protocol
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := keystore.Open(ctx, u.String(), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := New(s, Config{FlushInterval: time.Hour})
	defer r.Close(context.Background())
	for i := 0; i < 10; i++ {
		r.Record("AAAAAAAAAAAA", "acme", t0, 200, 1, 1, time.Millisecond)
	}
	lost := proxy.LoseReplyTo([]byte("commit"))
	if err := r.Flush(ctx); err == nil {
		t.Fatal("a flush whose commit answer was lost reported success")
	}
	select {
	case <-lost:
	default:
		t.Fatal("the proxy did not cut a reply to COMMIT: the fault was not exercised")
	}
	// The first write did commit: the store holds the batch already.
	if got, err := s.Usage(ctx, keystore.UsageQuery{KeyID: "AAAAAAAAAAAA", By: keystore.ByDay}); err != nil || len(got) != 1 || got[0].Requests() != 10 {
		t.Fatalf("after the lost answer the store holds %+v, %v; want the batch committed", got, err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("the retry: %v", err)
	}
	got, err := s.Usage(ctx, keystore.UsageQuery{KeyID: "AAAAAAAAAAAA", By: keystore.ByDay})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Requests() != 10 {
		t.Fatalf("stored %+v, want 10 requests", got)
	}
	if r.Stats.Duplicates.Load() != 1 || r.Stats.Written.Load() != 10 {
		t.Errorf("duplicates %d, written %d", r.Stats.Duplicates.Load(), r.Stats.Written.Load())
	}
}
