package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
)

// BenchmarkRequestPath measures the handler's own cost per request, with
// the request's setup outside the timer: each batch of requests is built
// (as Caddy's server builds them: a replacer, the request context, the
// access log's extra fields) while the timer is stopped, then served
// with it running, so ns/op and allocs/op are the handler's alone. The
// "setup" case times that setup instead, for the record.
//
// Cases: a cache hit with a route rate limit and usage metering on (the
// common request; the target is ≤ 1 µs and ≤ 2 allocations), the same
// for a key with a quota, without usage metering, and with a signed
// identity token (identity_jwt), a malformed key, an unknown key answered from
// the negative cache, a cache miss answered by PostgreSQL (skipped
// without PostgreSQL unless CI=true), and the rate limiter and usage
// recorder alone. docs/benchmarks.md has the figures. The miss case
// includes dropping the entry before each request (an atomic add and a
// map delete, small beside the query).
func BenchmarkRequestPath(b *testing.B) {
	dir := b.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "keys.db")
	// The rate is far above what a benchmark reaches: every request is
	// admitted and pays for the limiter and its headers.
	limited := func() *Handler {
		return &Handler{Database: dsn, Pepper: testPepper, RateLimit: &RateLimit{Rate: "1000000/s"}}
	}
	h := benchHandler(b, limited(), nil)
	// The same with usage metering off, and with a signed identity token
	// (cached per key, as in production).
	hOff := benchHandler(b, limited(), caddy.ModuleMap{"keygate": []byte(`{"usage":{"off":true}}`)})
	jwt := limited()
	jwt.IdentityJWT = &IdentityJWT{Audience: "legacy-api"}
	hJWT := benchHandler(b, jwt, nil)
	// Refused keys are measured without the failed-check budget, which
	// would answer 429 after its burst (its own cost is a map lookup).
	hRefusing := benchHandler(b, &Handler{Database: dsn, Pepper: testPepper, FailedAuthLimit: &FailedAuthLimit{Off: true}}, nil)
	if h.usage == nil || hOff.usage != nil || hJWT.issuer == nil {
		b.Fatal("usage metering and identity_jwt are not on and off as the benchmark needs")
	}

	key, rec := benchIssue(b, dsn, keystore.NewKeyParams{Name: "bench", Owner: "acme", Scopes: []string{"orders:read"}})
	quotaKey, _ := benchIssue(b, dsn, keystore.NewKeyParams{Name: "bench-quota", Owner: "acme",
		Limits: &keystore.Limits{Quota: "1000000000/day"}})
	unknown := unknownKey(b)

	b.Run("setup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			benchRequest(key)
		}
	})
	for _, c := range []struct {
		name, key string
		h         *Handler
		status    int
	}{
		{"hit-ratelimit-usage", key, h, http.StatusOK},
		{"hit-ratelimit-quota-usage", quotaKey, h, http.StatusOK},
		{"hit-ratelimit", key, hOff, http.StatusOK},
		{"hit-ratelimit-usage-identity-jwt", key, hJWT, http.StatusOK},
		{"malformed", key[:len(key)-1] + "!", hRefusing, http.StatusUnauthorized},
		{"negative-hit", unknown, hRefusing, http.StatusUnauthorized},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchServe(b, c.h, c.key, c.status, nil)
		})
	}
	b.Run("miss-postgres", func(b *testing.B) {
		pgDSN := pgtest.NewDatabase(b)
		hPG := benchHandler(b, &Handler{Database: pgDSN, Pepper: testPepper, RateLimit: &RateLimit{Rate: "1000000/s"}}, nil)
		pgKey, _ := benchIssue(b, pgDSN, keystore.NewKeyParams{Name: "bench", Owner: "acme"})
		parsed, err := hPG.format.Parse(pgKey)
		if err != nil {
			b.Fatal(err)
		}
		d := hPG.hasher.Digest(parsed)
		// Each request finds its key gone from the cache: one store
		// query per request, on loopback.
		benchServe(b, hPG, pgKey, http.StatusOK, func() { hPG.verifier.Invalidate(d) })
	})
	b.Run("limiter", func(b *testing.B) {
		l := h.limiter.keys
		limit := h.RateLimit
		p, _ := limit.policy("rate_limit")
		lim := p.Limit()
		now := h.clock.Now()
		b.ReportAllocs()
		for b.Loop() {
			if !l.Take(rec.ID, lim, now).Allowed {
				b.Fatal("refused")
			}
		}
	})
	b.Run("usage", func(b *testing.B) {
		now := h.clock.Now()
		b.ReportAllocs()
		for b.Loop() {
			h.usage.Record(rec.ID, rec.Owner, now, http.StatusOK, 0, 2, 0)
		}
	})
}

// benchHandler provisions h for a benchmark, with the configuration's
// apps (nil for none), and cleans it up after.
func benchHandler(b *testing.B, h *Handler, apps caddy.ModuleMap) *Handler {
	b.Helper()
	ctx, cancel := testContext(b, apps)
	if err := h.Provision(ctx); err != nil {
		cancel()
		h.Cleanup()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		h.Cleanup()
	})
	return h
}

// benchIssue creates a key in the store at dsn.
func benchIssue(b *testing.B, dsn string, p keystore.NewKeyParams) (string, *keystore.Key) {
	b.Helper()
	hasher, err := keystore.NewHasher([]byte(testPepper))
	if err != nil {
		b.Fatal(err)
	}
	s, err := keystore.Open(context.Background(), dsn, keystore.Options{PepperCheck: hasher.PepperCheck()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f, _ := keystore.NewFormat("")
	key, rec, err := testkeys.Issue(context.Background(), s, f, hasher, p)
	if err != nil {
		b.Fatal(err)
	}
	return key, rec
}

// unknownKey is a well-formed key the store does not hold.
func unknownKey(b *testing.B) string {
	b.Helper()
	f, _ := keystore.NewFormat("")
	k, _, err := f.Generate()
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// benchRequest is a request as Caddy's server hands it to a handler.
func benchRequest(key string) (http.ResponseWriter, *http.Request) {
	r := httptest.NewRequest("GET", "/orders", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	// Caddy's server sets Server before any handler runs.
	w := &benchWriter{header: http.Header{"Server": benchServerHeader}}
	return w, caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, benchServer)
}

// benchWriter is a response writer that costs no more than net/http's:
// httptest.ResponseRecorder copies the header map at WriteHeader, which
// would be counted as the handler's.
type benchWriter struct {
	header http.Header
	code   int
}

func (w *benchWriter) Header() http.Header { return w.header }
func (w *benchWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *benchWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}

var (
	benchServer       = &caddyhttp.Server{}
	benchServerHeader = []string{"Caddy"}
)

// benchServe serves requests with key through h and checks that each got
// the status expected: the benchmark measures what it says. before, if
// set, runs before each request, inside the timer.
func benchServe(b *testing.B, h *Handler, key string, status int, before func()) {
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	wrong := 0
	batched(b, func() (http.ResponseWriter, *http.Request) { return benchRequest(key) },
		func(w http.ResponseWriter, r *http.Request) {
			if before != nil {
				before()
			}
			_ = h.ServeHTTP(w, r, next)
			if w.(*benchWriter).code != status {
				wrong++
			}
		})
	if wrong > 0 {
		b.Fatalf("%d of %d requests did not get status %d", wrong, b.N, status)
	}
}

// batched runs serve b.N times on requests made by prepare, preparing
// them in batches with the timer stopped so that only serve is measured.
// Batches are small so that a request is still in the CPU's caches when
// it is served, as one just read from a connection is.
func batched(b *testing.B, prepare func() (http.ResponseWriter, *http.Request), serve func(http.ResponseWriter, *http.Request)) {
	const batch = 16
	ws := make([]http.ResponseWriter, 0, batch)
	rs := make([]*http.Request, 0, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		b.StopTimer()
		ws, rs = ws[:0], rs[:0]
		for range n {
			w, r := prepare()
			ws, rs = append(ws, w), append(rs, r)
		}
		b.StartTimer()
		for i := range n {
			serve(ws[i], rs[i])
		}
		done += n
	}
}
