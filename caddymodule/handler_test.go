package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/clock"
	"github.com/keygate/keygate/internal/testkeys"
	"github.com/keygate/keygate/keystore"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// store, cache and pool a handler takes must be released by Cleanup.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPepper looks like what `openssl rand -hex 32` prints, as
// keystore.ValidatePepper requires.
const testPepper = "3c9d4f2b7a1e86c05d2f9b7e4a13c8d6f0e5b2a79c41d83e6f0a5b1c7d29e84f"

// testStore is a real embedded key store in a temporary directory. Tests
// issue keys into it; the handler under test opens the same file, the way
// the CLI and a gateway share one.
type testStore struct {
	dsn    string
	store  keystore.Store
	format keystore.Format
	hasher *keystore.Hasher
}

func newTestStore(t *testing.T) *testStore {
	t.Helper()
	return openTestStore(t, "sqlite:"+filepath.Join(t.TempDir(), "keys.db"), []byte(testPepper))
}

func openTestStore(t *testing.T, dsn string, pepper []byte) *testStore {
	t.Helper()
	hasher, err := keystore.NewHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	s, err := keystore.Open(context.Background(), dsn, keystore.Options{PepperCheck: hasher.PepperCheck()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	format, err := keystore.NewFormat("")
	if err != nil {
		t.Fatal(err)
	}
	return &testStore{dsn: dsn, store: s, format: format, hasher: hasher}
}

func (ts *testStore) issue(t *testing.T, p keystore.NewKeyParams) (string, *keystore.Key) {
	t.Helper()
	if p.Name == "" {
		p.Name = "test key"
	}
	key, rec, err := testkeys.Issue(context.Background(), ts.store, ts.format, ts.hasher, p)
	if err != nil {
		t.Fatal(err)
	}
	return key, rec
}

func (ts *testStore) revoke(t *testing.T, id string) {
	t.Helper()
	if _, changed, err := testkeys.Revoke(context.Background(), ts.store, id); err != nil || !changed {
		t.Fatalf("revoking %s: changed %v, %v", id, changed, err)
	}
}

// unknownKey is well-formed but was never issued.
func (ts *testStore) unknownKey(t *testing.T) string {
	t.Helper()
	key, _, err := ts.format.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// handler provisions h against this store.
func (ts *testStore) handler(t *testing.T, h *Handler) *Handler {
	t.Helper()
	h.Database = ts.dsn
	h.Pepper = testPepper
	return provision(t, h)
}

// provision provisions h the way Caddy does and cleans it up when the test
// ends: config context cancelled first, then Cleanup.
// testContext is a configuration's context, as Caddy gives modules: apps
// (the keygate app) can be loaded from it. apps is the configuration's
// apps section, nil for none.
func testContext(tb testing.TB, apps caddy.ModuleMap) (caddy.Context, context.CancelFunc) {
	tb.Helper()
	cfgCtx, err := caddy.ProvisionContext(&caddy.Config{AppsRaw: apps})
	if err != nil {
		tb.Fatalf("provisioning the configuration: %v", err)
	}
	return caddy.NewContext(cfgCtx)
}

func provision(t *testing.T, h *Handler) *Handler {
	t.Helper()
	ctx, cancel := testContext(t, nil)
	if err := h.Provision(ctx); err != nil {
		cancel()
		h.Cleanup()
		t.Fatalf("Provision: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := h.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	return h
}

// tryProvision provisions h and returns the error; the caller cleans up.
func tryProvision(h *Handler) error {
	cfgCtx, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		return err
	}
	ctx, cancel := caddy.NewContext(cfgCtx)
	defer cancel()
	return h.Provision(ctx)
}

// observe replaces the handler's logger with one that records everything.
func observe(h *Handler) *observer.ObservedLogs {
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	h.security.close()
	h.security = newSecurityLog(h.logger)
	return logs
}

// served is the outcome of one ServeHTTP call.
type served struct {
	rec   *httptest.ResponseRecorder
	err   error
	next  *http.Request // the request next received; nil if it was not called
	repl  *caddy.Replacer
	extra *caddyhttp.ExtraLogFields
}

// serve runs r through h with the context Caddy's server would give it.
func serve(h *Handler, r *http.Request) *served {
	s := &served{rec: httptest.NewRecorder(), repl: caddy.NewReplacer(), extra: new(caddyhttp.ExtraLogFields)}
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, s.repl)
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, s.extra)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		s.next = r
		w.Write([]byte("upstream"))
		return nil
	})
	s.err = h.ServeHTTP(s.rec, r.WithContext(ctx), next)
	return s
}

func bearer(key string) string { return "Authorization: Bearer " + key }

func (s *served) placeholder(name string) (string, bool) {
	v, ok := s.repl.Get(name)
	str, _ := v.(string)
	return str, ok
}

// checkProblem checks a refusal written as application/problem+json.
func checkProblem(t *testing.T, s *served, status int, code string) {
	t.Helper()
	if s.next != nil {
		t.Error("next was called")
	}
	if s.err != nil {
		t.Errorf("ServeHTTP returned %v", s.err)
	}
	if s.rec.Code != status {
		t.Errorf("status %d, want %d", s.rec.Code, status)
	}
	hdr := s.rec.Header()
	if got := hdr.Get("Content-Type"); got != "application/problem+json" {
		t.Errorf("Content-Type %q", got)
	}
	if got := hdr.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q", got)
	}
	if got, want := hdr.Get("Content-Length"), strconv.Itoa(s.rec.Body.Len()); got != want {
		t.Errorf("Content-Length %q, body has %s bytes", got, want)
	}
	var body problemJSON
	if err := json.Unmarshal(s.rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", s.rec.Body, err)
	}
	if body.Code != code || body.Status != status || body.Type != problemTypeBase+code || body.Title == "" || body.Detail == "" {
		t.Errorf("body %+v, want code %s and status %d", body, code, status)
	}
	if got, _ := s.placeholder("api_key.error"); got != code {
		t.Errorf("{api_key.error} = %q, want %q", got, code)
	}
	if _, ok := s.placeholder("api_key.id"); ok {
		t.Error("{api_key.id} set on a refused request")
	}
}

// malformedKeys derives keys that fail each format check from a valid one.
func malformedKeys(t *testing.T, valid string) map[string]string {
	t.Helper()
	other, err := keystore.NewFormat("zz")
	if err != nil {
		t.Fatal(err)
	}
	wrongPrefix, _, err := other.Generate()
	if err != nil {
		t.Fatal(err)
	}
	replace := func(i int, c byte) string {
		b := []byte(valid)
		b[i] = c
		return string(b)
	}
	last := valid[len(valid)-1]
	flipped := byte('A')
	if last == 'A' {
		flipped = 'B'
	}
	sep := len("kg_") + keystore.IDLen // the '_' between id and secret
	return map[string]string{
		"garbage":      "hello",
		"wrong prefix": wrongPrefix,
		"too short":    valid[:len(valid)-1],
		"too long":     valid + "A",
		"bad alphabet": replace(sep+3, '-'),
		"bad layout":   replace(sep, 'A'),
		"bad checksum": replace(len(valid)-1, flipped),
		"lower case":   strings.ToLower(valid),
	}
}

func TestServeHTTPRefusals(t *testing.T) {
	ts := newTestStore(t)
	valid, _ := ts.issue(t, keystore.NewKeyParams{})
	revoked, rec := ts.issue(t, keystore.NewKeyParams{})
	ts.revoke(t, rec.ID)
	h := ts.handler(t, &Handler{Sources: []KeySource{{From: FromBearer}, {From: FromHeader, Name: "X-API-Key"}}})

	t.Run("missing", func(t *testing.T) {
		for _, r := range []*http.Request{
			newRequest("/"),
			newRequest("/", "Authorization: Basic dXNlcjpwYXNz"),
			newRequest("/?api_key=" + valid), // query is not a default source
			newRequest("/", "X-API-Key: "),
			newRequest("/", "Authorization: Bearer   "), // arrives trimmed: a scheme without a token
		} {
			s := serve(h, r)
			checkProblem(t, s, http.StatusUnauthorized, CodeMissingKey)
			if got := s.rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="api"` {
				t.Errorf("WWW-Authenticate %q", got)
			}
		}
	})

	// Malformed, unknown and revoked keys (and ambiguous requests) must
	// be indistinguishable to the client.
	invalid := map[string]*http.Request{
		"unknown":           newRequest("/", bearer(ts.unknownKey(t))),
		"revoked":           newRequest("/", bearer(revoked)),
		"revoked in header": newRequest("/", "X-API-Key: "+revoked),
		"two bearer keys":   newRequest("/", bearer(valid), bearer(valid)),
		"two X-API-Key":     newRequest("/", "X-API-Key: "+valid, "X-API-Key: "+valid),
	}
	for name, key := range malformedKeys(t, valid) {
		invalid["malformed "+name] = newRequest("/", bearer(key))
		invalid["malformed in header "+name] = newRequest("/", "X-API-Key: "+key)
	}
	var ref *served
	for name, r := range invalid {
		t.Run(name, func(t *testing.T) {
			s := serve(h, r)
			checkProblem(t, s, http.StatusUnauthorized, CodeInvalidKey)
			if got := s.rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="api", error="invalid_token"` {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if ref == nil {
				ref = s
				return
			}
			if !bytes.Equal(s.rec.Body.Bytes(), ref.rec.Body.Bytes()) {
				t.Errorf("body %q differs from %q", s.rec.Body, ref.rec.Body)
			}
			if !reflect.DeepEqual(s.rec.Header(), ref.rec.Header()) {
				t.Errorf("headers %v differ from %v", s.rec.Header(), ref.rec.Header())
			}
		})
	}

	// The control: the valid key itself gets through.
	if s := serve(h, newRequest("/", bearer(valid))); s.next == nil || s.err != nil {
		t.Fatalf("valid key refused: %d %s %v", s.rec.Code, s.rec.Body, s.err)
	}
}

func TestServeHTTPExpired(t *testing.T) {
	ts := newTestStore(t)
	start := time.Now().Truncate(time.Second)
	expires := start.Add(time.Hour)
	key, _ := ts.issue(t, keystore.NewKeyParams{ExpiresAt: expires})
	clk := clock.NewFake(start)
	h := ts.handler(t, &Handler{Realm: "acme", clock: clk, Cache: &CacheConfig{TTL: caddy.Duration(2 * time.Hour)}})
	waitWatching(t, h) // its start purges the cache, which would cost a second query

	if s := serve(h, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("key refused before its expiry: %d %s", s.rec.Code, s.rec.Body)
	}
	// The handler's clock, not the cache, decides, to the instant: the
	// record cached by the first request is still fresh, and still
	// accepted a nanosecond before the expiry.
	clk.Set(expires.Add(-time.Nanosecond))
	if s := serve(h, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("key refused a nanosecond before its expiry: %d %s", s.rec.Code, s.rec.Body)
	}
	clk.Set(expires)
	s := serve(h, newRequest("/", bearer(key)))
	checkProblem(t, s, http.StatusUnauthorized, CodeExpiredKey)
	want := `Bearer realm="acme", error="invalid_token", error_description="The API key has expired"`
	if got := s.rec.Header().Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate %q, want %q", got, want)
	}
	if q := h.verifier.Stats.StoreQueries.Load(); q != 1 {
		t.Errorf("%d store queries, want 1: the expiry must be enforced on the cached entry", q)
	}
}

// TestServeHTTPNotBefore: a key is refused with not_yet_valid_key until
// its not-before, to the instant, on a cached entry too; then it works.
func TestServeHTTPNotBefore(t *testing.T) {
	ts := newTestStore(t)
	start := time.Now().Truncate(time.Second).Add(time.Hour)
	key, _ := ts.issue(t, keystore.NewKeyParams{NotBefore: start})
	clk := clock.NewFake(start.Add(-time.Minute))
	h := ts.handler(t, &Handler{clock: clk, Cache: &CacheConfig{TTL: caddy.Duration(2 * time.Hour)}})
	waitWatching(t, h) // its start purges the cache, which would cost a second query
	s := serve(h, newRequest("/", bearer(key)))
	checkProblem(t, s, http.StatusUnauthorized, CodeNotYetValid)
	if got := s.rec.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error_description="The API key is not valid yet"`) {
		t.Errorf("WWW-Authenticate %q", got)
	}
	clk.Set(start.Add(-time.Nanosecond))
	checkProblem(t, serve(h, newRequest("/", bearer(key))), http.StatusUnauthorized, CodeNotYetValid)
	clk.Set(start)
	if s := serve(h, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("refused at its not-before: %d %s", s.rec.Code, s.rec.Body)
	}
	if q := h.verifier.Stats.StoreQueries.Load(); q != 1 {
		t.Errorf("%d store queries: the not-before must be enforced on the cached entry", q)
	}
}

func TestServeHTTPScopes(t *testing.T) {
	ts := newTestStore(t)
	h := ts.handler(t, &Handler{Scopes: []string{"orders:write", "read"}})
	tests := []struct {
		scopes []string
		ok     bool
	}{
		{nil, false},
		{[]string{"read"}, false},
		{[]string{"orders:write"}, false},
		{[]string{"orders:*"}, false}, // no wildcard matching
		{[]string{"read", "orders:write"}, true},
		{[]string{"admin", "orders:write", "read", "x"}, true},
	}
	for _, tt := range tests {
		key, _ := ts.issue(t, keystore.NewKeyParams{Scopes: tt.scopes})
		s := serve(h, newRequest("/", bearer(key)))
		if tt.ok {
			if s.next == nil {
				t.Errorf("scopes %v refused: %d %s", tt.scopes, s.rec.Code, s.rec.Body)
			}
			continue
		}
		checkProblem(t, s, http.StatusForbidden, CodeInsufficientScope)
		want := `Bearer realm="api", error="insufficient_scope", scope="orders:write read"`
		if got := s.rec.Header().Get("WWW-Authenticate"); got != want {
			t.Errorf("scopes %v: WWW-Authenticate %q, want %q", tt.scopes, got, want)
		}
	}
}

// TestMalformedKeysSkipCacheAndStore: the cache's counters are the real
// count of cache and store access, so zero means a malformed key touched
// neither.
func TestMalformedKeysSkipCacheAndStore(t *testing.T) {
	ts := newTestStore(t)
	valid, _ := ts.issue(t, keystore.NewKeyParams{})
	h := ts.handler(t, &Handler{})
	st := &h.verifier.Stats
	for range 3 {
		for _, key := range malformedKeys(t, valid) {
			serve(h, newRequest("/", bearer(key)))
			serve(h, newRequest("/", "X-API-Key: "+key))
		}
		serve(h, newRequest("/", "X-API-Key: a", "X-API-Key: b"))
	}
	if n := st.Hits.Load() + st.Misses.Load() + st.NegativeHits.Load() + st.StoreQueries.Load() + st.StaleHits.Load(); n != 0 {
		t.Fatalf("malformed keys reached cache or store: hits %d, misses %d, negative %d, queries %d",
			st.Hits.Load(), st.Misses.Load(), st.NegativeHits.Load(), st.StoreQueries.Load())
	}
	// The control: a well-formed unknown key does reach them, so the
	// counters above are live. (The store watch may purge the cache
	// between the two requests, so the second is a miss or a negative
	// hit.)
	unknown := ts.unknownKey(t)
	serve(h, newRequest("/", bearer(unknown)))
	serve(h, newRequest("/", bearer(unknown)))
	if m, n, q := st.Misses.Load(), st.NegativeHits.Load(), st.StoreQueries.Load(); m+n != 2 || q != m || q == 0 {
		t.Errorf("unknown key twice: misses %d, negative hits %d, queries %d", m, n, q)
	}
}

// logFields reads what the handler added to the access log fields.
// ExtraLogFields has no getter; reflection reads its unexported slice.
func logFields(e *caddyhttp.ExtraLogFields) map[string]string {
	out := map[string]string{}
	fields := reflect.ValueOf(e).Elem().FieldByName("fields")
	for i := range fields.Len() {
		f := fields.Index(i)
		out[f.FieldByName("Key").String()] = f.FieldByName("String").String()
	}
	return out
}

func TestServeHTTPAdmits(t *testing.T) {
	ts := newTestStore(t)
	key, rec := ts.issue(t, keystore.NewKeyParams{Name: "billing", Owner: "acme", Scopes: []string{"write", "read"},
		Metadata: map[string]string{"team": "payments", "tier": "gold"}})
	h := ts.handler(t, &Handler{Sources: everySource})

	// Each request carries the key in one source and a second key
	// ("JUNK") or an empty value in the others, plus forged identity
	// headers; none of them may reach the upstream.
	forged := []string{"X-Api-Key-Id: forged", "x-api-key-id: forged2", "X-Api-Key-Owner: forged"}
	tests := []struct {
		name    string
		target  string
		headers []string
		// kept must arrive unchanged.
		keptQuery  string
		keptHeader http.Header
	}{
		{
			name:       "bearer",
			target:     "/v1/orders?x=1&api_key=JUNK&y=2",
			headers:    []string{"Authorization: Bearer " + key, "X-API-Key: JUNK", "Cookie: s=1; api_key=JUNK"},
			keptQuery:  "x=1&y=2",
			keptHeader: http.Header{"Cookie": {"s=1"}},
		},
		{
			name:       "header",
			target:     "/v1/orders?api_key=JUNK",
			headers:    []string{"Authorization: Basic dXNlcjpwYXNz", "X-Api-Key: " + key, "Cookie: api_key=JUNK"},
			keptHeader: http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}},
		},
		{
			name:       "query",
			target:     "/v1/orders?b=%20x&api_key=" + key + "&a=1",
			headers:    []string{"Authorization: Basic dXNlcjpwYXNz", "Cookie: api_key=JUNK; s=1"},
			keptQuery:  "b=%20x&a=1",
			keptHeader: http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}, "Cookie": {"s=1"}},
		},
		{
			name:       "cookie",
			target:     "/v1/orders?api_key=&z=1",
			headers:    []string{"X-API-Key: ", "Cookie: s=1; api_key=" + key + "; t=2"},
			keptQuery:  "z=1",
			keptHeader: http.Header{"Cookie": {"s=1; t=2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(h, newRequest(tt.target, append(tt.headers, forged...)...))
			if s.err != nil || s.next == nil {
				t.Fatalf("refused: %d %s %v", s.rec.Code, s.rec.Body, s.err)
			}
			if s.rec.Body.String() != "upstream" {
				t.Errorf("response body %q, want the upstream's", s.rec.Body)
			}
			up := s.next
			for name, vals := range up.Header {
				for _, v := range vals {
					if strings.Contains(v, key) || strings.Contains(v, "JUNK") || strings.Contains(v, "forged") {
						t.Errorf("upstream header %s: %q", name, v)
					}
				}
			}
			if strings.Contains(up.RequestURI, "api_key") || strings.Contains(up.URL.RawQuery, "api_key") {
				t.Errorf("upstream URI %q still has the parameter", up.RequestURI)
			}
			if _, ok := up.Header["X-Api-Key"]; ok {
				t.Error("X-Api-Key header reached the upstream")
			}
			if up.URL.RawQuery != tt.keptQuery {
				t.Errorf("upstream query %q, want %q", up.URL.RawQuery, tt.keptQuery)
			}
			for name, want := range tt.keptHeader {
				if got := up.Header[name]; !reflect.DeepEqual(got, want) {
					t.Errorf("upstream %s = %q, want %q", name, got, want)
				}
			}
			if got := up.Header["X-Api-Key-Id"]; !reflect.DeepEqual(got, []string{rec.ID}) {
				t.Errorf("X-Api-Key-Id = %q, want [%s]", got, rec.ID)
			}
			if got := up.Header["X-Api-Key-Owner"]; !reflect.DeepEqual(got, []string{"acme"}) {
				t.Errorf("X-Api-Key-Owner = %q, want [acme]", got)
			}
			for name, want := range map[string]string{
				"http.auth.user.id": rec.ID,
				"api_key.id":        rec.ID,
				"api_key.name":      "billing",
				"api_key.owner":     "acme",
				"api_key.scopes":    "read,write",
				"api_key.meta.team": "payments",
				"api_key.meta.tier": "gold",
				"api_key.meta.none": "",
			} {
				if got, ok := s.placeholder(name); !ok || got != want {
					t.Errorf("{%s} = %q (set %v), want %q", name, got, ok, want)
				}
			}
			if _, ok := s.placeholder("api_key.error"); ok {
				t.Error("{api_key.error} set on success")
			}
			if got := logFields(s.extra); !reflect.DeepEqual(got, map[string]string{"api_key_id": rec.ID}) {
				t.Errorf("extra log fields %v, want api_key_id %s", got, rec.ID)
			}
		})
	}
}

func TestServeHTTPIdentityHeaders(t *testing.T) {
	ts := newTestStore(t)
	owned, ownedRec := ts.issue(t, keystore.NewKeyParams{Owner: "acme"})
	unowned, unownedRec := ts.issue(t, keystore.NewKeyParams{})
	forged := []string{"X-Api-Key-Id: forged", "X-Api-Key-Owner: forged", "X-Consumer-Id: forged", "X-Consumer-Owner: forged"}
	tests := []struct {
		name string
		h    *Handler
		key  string
		// want maps header names to their expected values (nil: absent).
		want http.Header
		// wantOwner is {api_key.owner}.
		wantOwner string
	}{
		{
			name:      "defaults",
			h:         &Handler{},
			key:       owned,
			want:      http.Header{"X-Api-Key-Id": {ownedRec.ID}, "X-Api-Key-Owner": {"acme"}},
			wantOwner: "acme",
		},
		{
			// The client's owner header must go even when there is no
			// trusted value to replace it with.
			name: "no owner",
			h:    &Handler{},
			key:  unowned,
			want: http.Header{"X-Api-Key-Id": {unownedRec.ID}, "X-Api-Key-Owner": nil},
		},
		{
			name: "custom names",
			h:    &Handler{IDHeader: "x-consumer-id", OwnerHeader: "X-CONSUMER-OWNER"},
			key:  owned,
			want: http.Header{
				"X-Consumer-Id": {ownedRec.ID}, "X-Consumer-Owner": {"acme"},
				// Renamed, but an upstream may still trust the default
				// names: a client must not set them either.
				"X-Api-Key-Id": nil, "X-Api-Key-Owner": nil,
			},
			wantOwner: "acme",
		},
		{
			name:      "custom names, no owner",
			h:         &Handler{IDHeader: "X-Consumer-Id", OwnerHeader: "X-Consumer-Owner"},
			key:       unowned,
			want:      http.Header{"X-Consumer-Id": {unownedRec.ID}, "X-Consumer-Owner": nil},
			wantOwner: "",
		},
		{
			name:      "disabled",
			h:         &Handler{IDHeader: "-", OwnerHeader: "-"},
			key:       owned,
			want:      http.Header{"X-Api-Key-Id": nil, "X-Api-Key-Owner": nil, "X-Consumer-Id": {"forged"}},
			wantOwner: "acme",
		},
		{
			// "off" in JSON means what it means in the Caddyfile.
			name:      "disabled with off",
			h:         &Handler{IDHeader: "off", OwnerHeader: "off"},
			key:       owned,
			want:      http.Header{"X-Api-Key-Id": nil, "X-Api-Key-Owner": nil, "Off": nil},
			wantOwner: "acme",
		},
		{
			name:      "only owner disabled",
			h:         &Handler{OwnerHeader: "-"},
			key:       owned,
			want:      http.Header{"X-Api-Key-Id": {ownedRec.ID}, "X-Api-Key-Owner": nil},
			wantOwner: "acme",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := ts.handler(t, tt.h)
			s := serve(h, newRequest("/", append([]string{bearer(tt.key)}, forged...)...))
			if s.next == nil {
				t.Fatalf("refused: %d %s", s.rec.Code, s.rec.Body)
			}
			for name, want := range tt.want {
				if got := s.next.Header[name]; !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			// Placeholders do not depend on the headers.
			if got, _ := s.placeholder("api_key.id"); got == "" || got == "forged" {
				t.Errorf("{api_key.id} = %q", got)
			}
			if got, ok := s.placeholder("api_key.owner"); !ok || got != tt.wantOwner {
				t.Errorf("{api_key.owner} = %q (set %v), want %q", got, ok, tt.wantOwner)
			}
		})
	}
}

// TestServeHTTPStoreUnavailable: nothing listens on port 1, and
// keystore.Open does not fail for an unreachable PostgreSQL, so the
// handler provisions and must then fail closed.
func TestServeHTTPStoreUnavailable(t *testing.T) {
	ts := newTestStore(t) // only for its key format
	h := provision(t, &Handler{
		Database:   "postgres://postgres@127.0.0.1:1/nope?connect_timeout=2",
		Pepper:     testPepper,
		RetryAfter: caddy.Duration(1500 * time.Millisecond),
		Sources:    []KeySource{{From: FromBearer}, {From: FromHeader, Name: "X-API-Key"}},
	})
	logs := observe(h)
	key := ts.unknownKey(t)

	for i := range 2 {
		for _, r := range []*http.Request{newRequest("/", bearer(key)), newRequest("/", "X-API-Key: "+key)} {
			s := serve(h, r)
			checkProblem(t, s, http.StatusServiceUnavailable, CodeStoreUnavailable)
			if got := s.rec.Header().Get("Retry-After"); got != "2" {
				t.Errorf("request %d: Retry-After %q, want 2 (1.5s rounded up)", i, got)
			}
			if got := s.rec.Header().Get("WWW-Authenticate"); got != "" {
				t.Errorf("request %d: WWW-Authenticate %q on a 503", i, got)
			}
		}
	}
	if h.verifier.Stats.StoreErrors.Load() == 0 {
		t.Error("no store error counted")
	}
	if logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessage("key store unavailable; answering 503").Len() == 0 {
		t.Error("the outage was not logged at error level")
	}

	// Requests the handler can refuse without the store still get 401.
	checkProblem(t, serve(h, newRequest("/", bearer(key[:len(key)-1]))), http.StatusUnauthorized, CodeInvalidKey)
	checkProblem(t, serve(h, newRequest("/")), http.StatusUnauthorized, CodeMissingKey)

	// In handle_errors mode the 503 goes to Caddy with its headers set.
	he := provision(t, &Handler{Database: h.Database, Pepper: testPepper, HandleErrors: true})
	s := serve(he, newRequest("/", bearer(key)))
	checkHandlerError(t, s, http.StatusServiceUnavailable, CodeStoreUnavailable)
	if got := s.rec.Header().Get("Retry-After"); got != "5" {
		t.Errorf("handle_errors: Retry-After %q, want the default 5", got)
	}
}

// checkHandlerError checks a refusal returned to Caddy in handle_errors
// mode: an error with the status, headers set, nothing written.
func checkHandlerError(t *testing.T, s *served, status int, code string) {
	t.Helper()
	if s.next != nil {
		t.Error("next was called")
	}
	var he caddyhttp.HandlerError
	if !errors.As(s.err, &he) {
		t.Fatalf("ServeHTTP returned %v, want a caddyhttp.HandlerError", s.err)
	}
	if he.StatusCode != status || he.Err == nil || !strings.HasPrefix(he.Err.Error(), code+": ") {
		t.Errorf("HandlerError %d %v, want %d %s", he.StatusCode, he.Err, status, code)
	}
	if s.rec.Body.Len() != 0 || s.rec.Header().Get("Content-Type") != "" || s.rec.Header().Get("Content-Length") != "" {
		t.Errorf("a body was written: %q %v", s.rec.Body, s.rec.Header())
	}
	if got := s.rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q", got)
	}
	if got, _ := s.placeholder("api_key.error"); got != code {
		t.Errorf("{api_key.error} = %q, want %q", got, code)
	}
}

func TestServeHTTPHandleErrors(t *testing.T) {
	ts := newTestStore(t)
	valid, _ := ts.issue(t, keystore.NewKeyParams{})
	h := ts.handler(t, &Handler{HandleErrors: true, Scopes: []string{"admin"}})
	tests := []struct {
		name     string
		r        *http.Request
		status   int
		code     string
		wwwAuth  string
		wantNext bool
	}{
		{"missing", newRequest("/"), 401, CodeMissingKey, `Bearer realm="api"`, false},
		{"malformed", newRequest("/", bearer("kg_nope")), 401, CodeInvalidKey, `Bearer realm="api", error="invalid_token"`, false},
		{"unknown", newRequest("/", bearer(ts.unknownKey(t))), 401, CodeInvalidKey, `Bearer realm="api", error="invalid_token"`, false},
		{"scope", newRequest("/", bearer(valid)), 403, CodeInsufficientScope, `Bearer realm="api", error="insufficient_scope", scope="admin"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serve(h, tt.r)
			checkHandlerError(t, s, tt.status, tt.code)
			if got := s.rec.Header().Get("WWW-Authenticate"); got != tt.wwwAuth {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.wwwAuth)
			}
		})
	}
}

// TestLogsNeverContainKey runs every outcome with debug logging on and
// checks that no message or field quotes the key.
func TestLogsNeverContainKey(t *testing.T) {
	ts := newTestStore(t)
	valid, _ := ts.issue(t, keystore.NewKeyParams{})
	revoked, rec := ts.issue(t, keystore.NewKeyParams{})
	ts.revoke(t, rec.ID)
	h := ts.handler(t, &Handler{Scopes: []string{"x"}})
	logs := observe(h)
	keys := []string{valid, revoked, ts.unknownKey(t)}
	for _, k := range malformedKeys(t, valid) {
		keys = append(keys, k)
	}
	for _, k := range keys {
		serve(h, newRequest("/", bearer(k)))
	}
	if logs.Len() < len(keys) {
		t.Fatalf("%d log entries for %d refusals; want one each", logs.Len(), len(keys))
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		for _, k := range keys {
			if len(k) > 10 && strings.Contains(line, k) {
				t.Errorf("log entry quotes a key: %s", line)
			}
		}
	}
}

// TestPepperPlaceholders: a pepper file named by {file.…} is checked like
// the generated one, and a pepper holding a stray {…} is refused without
// quoting it.
func TestPepperPlaceholders(t *testing.T) {
	sqlite := func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "keys.db") }
	dir := t.TempDir()
	file := filepath.Join(dir, "pepper")
	if err := os.WriteFile(file, []byte(testPepper+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	provision(t, &Handler{Database: sqlite(t), Pepper: "{file." + file + "}"}) // a private pepper file
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Database: sqlite(t), Pepper: "{file." + file + "}"}
	err := tryProvision(h)
	h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "readable by other users") {
		t.Fatalf("a world-readable pepper file named by {file.…}: %v", err)
	}
	h = &Handler{Database: sqlite(t), Pepper: "9e0b6a4c2f81d7e35b9c{secretword}0f2a6d48e1b7c3f5a90d2e6b8c14f7a3d5e09b"}
	err = tryProvision(h)
	h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "not a known placeholder") || strings.Contains(err.Error(), "secretword") {
		t.Fatalf("a pepper with a stray placeholder: %v", err)
	}
}

func TestProvisionErrors(t *testing.T) {
	sqlite := func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "keys.db") }
	negative := caddy.Duration(-time.Second)
	tests := []struct {
		name    string
		h       func(t *testing.T) *Handler
		wantErr string
		wantIs  error
	}{
		{"postgres without pepper", func(t *testing.T) *Handler {
			return &Handler{Database: "postgres://gw@127.0.0.1:1/keys"}
		}, "pepper is required with PostgreSQL", nil},
		{"postgresql without pepper", func(t *testing.T) *Handler {
			return &Handler{Database: "postgresql://gw@127.0.0.1:1/keys"}
		}, "pepper is required with PostgreSQL", nil},
		{"unsupported database without pepper", func(t *testing.T) *Handler {
			// The scheme is checked before the pepper, whose message
			// would otherwise send the user looking at PostgreSQL.
			return &Handler{Database: "mysql://gw:secret@127.0.0.1/keys"}
		}, "unsupported database", nil},
		{"pepper too short", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: "short"}
		}, "pepper is too short", nil},
		{"pepper placeholder empty", func(t *testing.T) *Handler {
			t.Setenv("KEYGATE_TEST_EMPTY_PEPPER", "")
			return &Handler{Database: sqlite(t), Pepper: "{env.KEYGATE_TEST_EMPTY_PEPPER}"}
		}, "pepper {env.KEYGATE_TEST_EMPTY_PEPPER} is empty: is the environment variable", nil},
		{"pepper placeholder unset", func(t *testing.T) *Handler {
			// Caddy's env placeholder treats unset like empty.
			return &Handler{Database: sqlite(t), Pepper: "{env.KEYGATE_TEST_NEVER_SET_3f9a}"}
		}, "{env.KEYGATE_TEST_NEVER_SET_3f9a} is empty", nil},
		{"pepper file placeholder missing", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: "{file." + filepath.Join(t.TempDir(), "none") + "}"}
		}, "pepper: reading pepper file", nil},
		{"pepper placeholder blank", func(t *testing.T) *Handler {
			t.Setenv("KEYGATE_TEST_BLANK_PEPPER", "   ")
			return &Handler{Database: sqlite(t), Pepper: "{env.KEYGATE_TEST_BLANK_PEPPER}"}
		}, "pepper {env.KEYGATE_TEST_BLANK_PEPPER} is empty", nil},
		{"pepper placeholder unknown", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: "{nope.pepper}"}
		}, "not a known placeholder", nil},
		{"database placeholder empty", func(t *testing.T) *Handler {
			t.Setenv("KEYGATE_TEST_EMPTY_DB", "")
			return &Handler{Database: "{env.KEYGATE_TEST_EMPTY_DB}", Pepper: testPepper}
		}, "database: evaluated placeholder {env.KEYGATE_TEST_EMPTY_DB} is empty", nil},
		{"unsupported database", func(t *testing.T) *Handler {
			return &Handler{Database: "mysql://u:secretpw@127.0.0.1/keys", Pepper: testPepper}
		}, "unsupported database", nil},
		{"sqlite path with query", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t) + "?mode=ro", Pepper: testPepper}
		}, "plain file path", nil},
		{"pepper mismatch", func(t *testing.T) *Handler {
			ts := newTestStore(t)
			return &Handler{Database: ts.dsn, Pepper: "9e0b6a4c2f81d7e35b9c0f2a6d48e1b7c3f5a90d2e6b8c14f7a3d5e09b2c6f81"}
		}, "opening key store", keystore.ErrPepperMismatch},
		{"bad prefix underscore", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Prefix: "a__b"}
		}, "may contain '_' only between", nil},
		{"bad prefix character", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Prefix: "k-g"}
		}, "may contain only", nil},
		{"prefix too long", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Prefix: strings.Repeat("k", 17)}
		}, "1 to 16 characters", nil},
		{"duplicate bearer", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Sources: []KeySource{{From: FromBearer}, {From: FromBearer}}}
		}, "key source 'bearer' is listed twice", nil},
		{"duplicate header after canonicalisation", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper,
				Sources: []KeySource{{From: FromHeader, Name: "x-api-key"}, {From: FromHeader, Name: "X-API-KEY"}}}
		}, "key source 'header X-Api-Key' is listed twice", nil},
		{"invalid source", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Sources: []KeySource{{From: "nope", Name: "x"}}}
		}, `unknown key source "nope"`, nil},
		{"bad scope", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Scopes: []string{"read write"}}
		}, "scopes:", nil},
		{"store_timeout too short", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, StoreTimeout: caddy.Duration(time.Nanosecond)}
		}, "store_timeout 1ns is too short for any key store query", nil},
		{"cache size beyond any machine", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Cache: &CacheConfig{Size: 100_000_000_000}}
		}, "cache size 100000000000 is more than 1073741824", nil},
		{"negative cache size beyond any machine", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Cache: &CacheConfig{NegativeSize: 1 << 31}}
		}, "cache negative_size 2147483648 is more than", nil},
		{"allowed_origins without a cookie source", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, AllowedOrigins: []string{"https://a.example"}}
		}, "allowed_origins is only used with a cookie key source", nil},
		{"allowed_origins not an origin", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, AllowedOrigins: []string{"https://a.example/path"},
				Sources: []KeySource{{From: FromCookie, Name: "k"}}}
		}, "allowed_origins:", nil},
		{"failed_auth_limit off with a rate", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, FailedAuthLimit: &FailedAuthLimit{Off: true, Rate: "1/s"}}
		}, "off takes no rate, burst or delay", nil},
		{"failed_auth_limit off with a delay", func(t *testing.T) *Handler {
			d := caddy.Duration(time.Second)
			return &Handler{Database: sqlite(t), Pepper: testPepper, FailedAuthLimit: &FailedAuthLimit{Off: true, Delay: &d}}
		}, "off takes no rate, burst or delay", nil},
		{"failed_auth_limit delay too long", func(t *testing.T) *Handler {
			d := caddy.Duration(time.Hour)
			return &Handler{Database: sqlite(t), Pepper: testPepper, FailedAuthLimit: &FailedAuthLimit{Delay: &d}}
		}, "failed_auth_limit: delay must be 0 to 1m, got 1h0m0s", nil},
		{"failed_auth_limit bad rate", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, FailedAuthLimit: &FailedAuthLimit{Rate: "fast"}}
		}, "failed_auth_limit: rate \"fast\" must be N/s, N/m or N/h", nil},
		{"failed_auth_limit negative burst", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, FailedAuthLimit: &FailedAuthLimit{Burst: -1}}
		}, "burst must be 1 to 1000000", nil},
		{"failed_auth_limit burst that overflows", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, FailedAuthLimit: &FailedAuthLimit{Rate: "1/h", Burst: 10_000_000}}
		}, "burst must be 1 to 1000000", nil},
		{"failed_auth_limit burst too long", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, FailedAuthLimit: &FailedAuthLimit{Rate: "1/h", Burst: 1_000_000}}
		}, "spans more time than a limit can hold", nil},
		{"id_header is the key header", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, IDHeader: "x-api-key",
				Sources: []KeySource{{From: FromHeader, Name: "X-API-Key"}}}
		}, "id_header X-Api-Key is also a key source", nil},
		{"owner_header is Authorization with bearer", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, OwnerHeader: "authorization"}
		}, "owner_header Authorization is also a key source", nil},
		{"id_header is a configured header source", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper,
				Sources: []KeySource{{From: FromHeader, Name: "X-Token"}}, IDHeader: "X-TOKEN"}
		}, "id_header X-Token is also a key source", nil},
		{"id_header invalid", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, IDHeader: "X Id"}
		}, `id_header "X Id" is not a valid header name`, nil},
		{"owner_header invalid", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, OwnerHeader: "X-Owner:"}
		}, "owner_header", nil},
		{"id_header equals owner_header", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, IDHeader: "X-Who", OwnerHeader: "x-who"}
		}, "id_header and owner_header are both X-Who", nil},
		{"id_header equals default owner_header", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, IDHeader: "X-Api-Key-Owner"}
		}, "are both X-Api-Key-Owner", nil},
		{"realm with quote", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Realm: `my "api"`}
		}, "realm", nil},
		{"realm with backslash", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Realm: `a\b`}
		}, "realm", nil},
		{"realm with newline", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Realm: "a\r\nX-Evil: 1"}
		}, "realm", nil},
		{"realm not ASCII", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Realm: "схема"}
		}, "realm", nil},
		{"negative retry_after", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, RetryAfter: negative}
		}, "retry_after must not be negative", nil},
		{"negative store_timeout", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, StoreTimeout: negative}
		}, "store_timeout must not be negative", nil},
		{"negative max_store_queries", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, MaxStoreQueries: -1}
		}, "max_store_queries must not be negative", nil},
		{"negative cache size", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Cache: &CacheConfig{Size: -1}}
		}, "cache sizes must not be negative", nil},
		{"negative negative_size", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Cache: &CacheConfig{NegativeSize: -1}}
		}, "cache sizes must not be negative", nil},
		{"negative ttl", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Cache: &CacheConfig{TTL: negative}}
		}, "cache durations must not be negative", nil},
		{"negative max_stale", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Cache: &CacheConfig{MaxStale: &negative}}
		}, "cache durations must not be negative", nil},
		{"negative negative_ttl", func(t *testing.T) *Handler {
			return &Handler{Database: sqlite(t), Pepper: testPepper, Cache: &CacheConfig{NegativeTTL: negative}}
		}, "cache durations must not be negative", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.h(t)
			err := tryProvision(h)
			if err == nil {
				h.Cleanup()
				t.Fatalf("Provision succeeded; want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want one containing %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q does not match %v", err, tt.wantIs)
			}
			if strings.Contains(err.Error(), "secretpw") || strings.Contains(err.Error(), testPepper) {
				t.Errorf("error %q reveals a secret", err)
			}
			// Caddy calls Cleanup on a handler whose Provision failed.
			for range 2 {
				if err := h.Cleanup(); err != nil {
					t.Errorf("Cleanup after failed Provision: %v", err)
				}
			}
			if n, m := poolSize(verifiers), poolSize(stores); n != 0 || m != 0 {
				t.Errorf("failed Provision left %d caches and %d stores in the pools", n, m)
			}
		})
	}
}

// waitWatching waits until the store watch behind h's cache has started.
// Starting, it purges every cache over the store, and until then caches
// trust entries for DegradedTTL only, so hit counts are stable only after.
func waitWatching(t *testing.T, h *Handler) {
	t.Helper()
	for i := 0; i < 400 && !h.verifier.store.invalidator.IsHealthy(); i++ {
		time.Sleep(25 * time.Millisecond)
	}
	if !h.verifier.store.invalidator.IsHealthy() {
		t.Fatal("the key store watch did not start within 10s")
	}
}

func poolSize(p *caddy.UsagePool) int {
	n := 0
	p.Range(func(_, _ any) bool { n++; return true })
	return n
}

// TestProvisionGeneratesPepper: the embedded store without a configured
// pepper gets one generated beside the database, private, and reused.
func TestProvisionGeneratesPepper(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "data", "keys.db")
	dsn := "sqlite:" + dbPath
	pepperPath := dbPath + ".pepper"

	h1 := provision(t, &Handler{Database: dsn})
	info, err := os.Stat(pepperPath)
	if err != nil {
		t.Fatalf("no pepper file: %v", err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("pepper file mode %v, want 0600", perm)
	}
	pepper, err := os.ReadFile(pepperPath)
	if err != nil {
		t.Fatal(err)
	}
	// Keys issued with the file's pepper are the gateway's keys.
	ts := openTestStore(t, dsn, bytes.TrimSpace(pepper))
	if ts.hasher.PepperCheck() != h1.hasher.PepperCheck() {
		t.Fatal("the handler does not use the pepper in the file")
	}
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	if err := h1.Cleanup(); err != nil {
		t.Fatal(err)
	}

	h2 := provision(t, &Handler{Database: dsn})
	again, err := os.ReadFile(pepperPath)
	if err != nil || !bytes.Equal(again, pepper) {
		t.Fatalf("pepper file changed on the second start: %v", err)
	}
	if s := serve(h2, newRequest("/", bearer(key))); s.next == nil {
		t.Errorf("key refused after restart: %d %s", s.rec.Code, s.rec.Body)
	}
}

// TestVerifierSharedAcrossReloads: handlers with the same settings share
// one cache (so a reload keeps it warm), handlers with other cache
// settings get their own over the same store, and Cleanup releases all.
func TestVerifierSharedAcrossReloads(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	maxStaleOff := caddy.Duration(0)

	h1 := ts.handler(t, &Handler{})
	h2 := ts.handler(t, &Handler{Realm: "other"}) // not a cache setting
	h3 := ts.handler(t, &Handler{Cache: &CacheConfig{Size: 1000}})
	h4 := ts.handler(t, &Handler{Cache: &CacheConfig{MaxStale: &maxStaleOff}})
	h5 := ts.handler(t, &Handler{StoreTimeout: caddy.Duration(time.Second)})

	if h1.verifier != h2.verifier {
		t.Error("identical cache settings got different caches")
	}
	for i, h := range []*Handler{h3, h4, h5} {
		if h.verifier == h1.verifier {
			t.Errorf("handler %d: other cache settings share the default cache", i+3)
		}
	}
	if h3.verifier == h4.verifier || h4.verifier == h5.verifier || h3.verifier == h5.verifier {
		t.Error("different cache settings share a cache")
	}
	if n, _ := verifiers.References(h1.poolKey); n != 2 {
		t.Errorf("shared cache has %d references, want 2", n)
	}
	if h1.usage == nil || h1.usage != h5.usage {
		t.Error("handlers on one store do not share one usage recorder")
	}
	if n, _ := stores.References(h1.poolKey.store); n != 6 {
		t.Errorf("store has %d references, want 6 (one per cache, one for the usage recorder, one for the quota counters)", n)
	}

	// What h1 cached, h2 finds: one store query for both.
	waitWatching(t, h1)
	if s := serve(h1, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("h1 refused: %d", s.rec.Code)
	}
	if s := serve(h2, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("h2 refused: %d", s.rec.Code)
	}
	if st := &h2.verifier.Stats; st.StoreQueries.Load() != 1 || st.Hits.Load() != 1 {
		t.Errorf("shared cache: %d queries, %d hits; want 1 and 1", st.StoreQueries.Load(), st.Hits.Load())
	}

	// The old config goes away; the new one keeps the cache.
	shared := h2.verifier
	if err := h1.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n, _ := verifiers.References(h2.poolKey); n != 1 {
		t.Errorf("after one Cleanup: %d references, want 1", n)
	}
	if s := serve(h2, newRequest("/", bearer(key))); s.next == nil || shared.Stats.Hits.Load() != 2 {
		t.Errorf("after the old handler's Cleanup: status %d, hits %d", s.rec.Code, shared.Stats.Hits.Load())
	}

	for _, h := range []*Handler{h1, h2, h3, h4, h5} {
		for range 2 { // a second Cleanup must do nothing
			if err := h.Cleanup(); err != nil {
				t.Errorf("Cleanup: %v", err)
			}
		}
	}
	for _, h := range []*Handler{h1, h2, h3, h4, h5} {
		if n, ok := verifiers.References(h.poolKey); ok || n != 0 {
			t.Errorf("cache still referenced %d times", n)
		}
	}
	if n, ok := stores.References(h1.poolKey.store); ok || n != 0 {
		t.Errorf("store still referenced %d times", n)
	}
	if n, m := poolSize(verifiers), poolSize(stores); n != 0 || m != 0 {
		t.Errorf("pools hold %d caches and %d stores after every Cleanup", n, m)
	}
}

func TestCacheConfig(t *testing.T) {
	zero, tenSec := caddy.Duration(0), caddy.Duration(10*time.Second)
	tests := []struct {
		name string
		h    Handler
		want cache.Config
	}{
		{"defaults", Handler{}, cache.Config{MaxStale: defaultMaxStale}.WithDefaults()},
		{"max_stale off", Handler{Cache: &CacheConfig{MaxStale: &zero}}, cache.Config{}.WithDefaults()},
		{"everything", Handler{
			StoreTimeout:    caddy.Duration(time.Second),
			MaxStoreQueries: 3,
			Cache: &CacheConfig{Size: 10, TTL: caddy.Duration(time.Minute), MaxStale: &tenSec,
				NegativeSize: 5, NegativeTTL: caddy.Duration(time.Second)},
		}, cache.Config{
			MaxKeys: 10, TTL: time.Minute, MaxStale: 10 * time.Second, NegativeMaxKeys: 5,
			NegativeTTL: time.Second, QueryTimeout: time.Second, MaxQueries: 3,
		}.WithDefaults()},
	}
	for _, tt := range tests {
		if got := tt.h.cacheConfig(); got != tt.want {
			t.Errorf("%s: cacheConfig() = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestRetrySeconds(t *testing.T) {
	for in, want := range map[time.Duration]int{
		0:                       5,
		time.Millisecond:        1,
		time.Second:             1,
		1500 * time.Millisecond: 2,
		time.Minute:             60,
	} {
		if got := retrySeconds(caddy.Duration(in)); got != want {
			t.Errorf("retrySeconds(%v) = %d, want %d", in, got, want)
		}
	}
}

// TestProvisionBadSQLiteDSNCreatesNothing: the DSN is checked before the
// pepper is resolved, so a mistyped embedded DSN leaves no pepper file
// behind in the working directory.
func TestProvisionBadSQLiteDSNCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	h := &Handler{Database: "sqlite:"}
	ctx, cancel := testContext(t, nil)
	defer cancel()
	err := h.Provision(ctx)
	h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), "no file path") {
		t.Fatalf("Provision with sqlite: and no path: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("Provision left files behind: %v", entries)
	}
}

func TestCheckCacheSize(t *testing.T) {
	const gib = 1 << 30
	if err := checkCacheSize("cache size", 10_000_000, bytesPerKey, 24*gib); err != nil {
		t.Errorf("10M keys on 24 GiB: %v", err)
	}
	err := checkCacheSize("cache size", 1_000_000_000, bytesPerKey, 24*gib)
	if err == nil || !strings.Contains(err.Error(), "would take about 366210 MiB when full") || !strings.Contains(err.Error(), "this machine's 24576 MiB") ||
		!strings.Contains(err.Error(), "at most 33554432 fits") {
		t.Errorf("1G keys on 24 GiB: %v", err)
	}
	if err := checkCacheSize("cache size", 1_000_000_000, bytesPerKey, 0); err != nil {
		t.Errorf("with the machine's memory unknown only the absolute bound applies: %v", err)
	}
	if totalMemory() == 0 {
		t.Log("this system's memory is unknown")
	}
}

// TestDirectiveReadsTheCLIEnvironment: a bare api_key directive finds the
// store and pepper the way the CLI does, so that both use the same store.
func TestDirectiveReadsTheCLIEnvironment(t *testing.T) {
	ts := newTestStore(t)
	key, _ := ts.issue(t, keystore.NewKeyParams{})
	t.Setenv("KEYGATE_DATABASE", ts.dsn)
	t.Setenv("KEYGATE_PEPPER", testPepper)
	h := provision(t, &Handler{})
	if h.poolKey.store.dsn != ts.dsn {
		t.Fatalf("the directive opened %s, want %s from KEYGATE_DATABASE", h.poolKey.store.dsn, ts.dsn)
	}
	if s := serve(h, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("a key of the store named by the environment was refused: %d", s.rec.Code)
	}
	// The pepper from a file, as KEYGATE_PEPPER_FILE names it.
	file := filepath.Join(t.TempDir(), "pepper")
	if err := os.WriteFile(file, []byte(testPepper), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYGATE_PEPPER", "")
	t.Setenv("KEYGATE_PEPPER_FILE", file)
	h = provision(t, &Handler{})
	if s := serve(h, newRequest("/", bearer(key))); s.next == nil {
		t.Fatalf("with KEYGATE_PEPPER_FILE the key was refused: %d", s.rec.Code)
	}
	// What the directive sets wins.
	other := "sqlite:" + filepath.Join(t.TempDir(), "other.db")
	h = provision(t, &Handler{Database: other, Pepper: testPepper})
	if h.poolKey.store.dsn != other {
		t.Fatalf("the directive's database was overridden by the environment: %s", h.poolKey.store.dsn)
	}
}
