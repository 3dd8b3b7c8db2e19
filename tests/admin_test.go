package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// adminClient calls a gateway's admin API and checks every answer
// against the OpenAPI document the gateway serves.
type adminClient struct {
	t    *testing.T
	base string
	spec *jsonschema.Compiler
	seen map[string]bool // documented responses checked: "GET /api-keys 200"
}

func newAdminClient(t *testing.T, g *gateway) *adminClient {
	t.Helper()
	c := &adminClient{t: t, base: "http://" + g.admin, seen: map[string]bool{}}
	res, err := http.Get(c.base + "/api-keys/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	doc, err := jsonschema.UnmarshalJSON(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /api-keys/openapi.json: %d, %v", res.StatusCode, err)
	}
	if v, _ := doc.(map[string]any)["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		t.Fatalf("the document is OpenAPI %q, want 3.1", v)
	}
	c.spec = jsonschema.NewCompiler()
	c.spec.DefaultDraft(jsonschema.Draft2020)
	if err := c.spec.AddResource("mem:///openapi.json", doc); err != nil {
		t.Fatal(err)
	}
	return c
}

// adminAnswer is one answer of the admin API.
type adminAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a adminAnswer) String() string { return fmt.Sprintf("%d %s", a.status, a.body) }

// problem decodes a problem answer.
func (a adminAnswer) problem(t *testing.T) problem {
	t.Helper()
	var p problem
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatalf("not a problem document: %v\n%s", err, a.body)
	}
	return p
}

// do sends a request to path (route is its template in the document) and
// validates the answer's body against the schema the document gives for
// its status and content type.
func (c *adminClient) do(method, route, path, contentType string, body []byte) adminAnswer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	a := adminAnswer{res.StatusCode, res.Header, b}
	if a.status >= 500 && a.status != http.StatusServiceUnavailable {
		c.t.Fatalf("%s %s: %s", method, path, a)
	}
	ct := res.Header.Get("Content-Type")
	ptr := "/paths/" + escapePointer(route) + "/" + strings.ToLower(method) + "/responses/" + strconv.Itoa(a.status) + "/content/" + escapePointer(ct) + "/schema"
	if !c.documented(route, method) {
		// A method the path does not take: a 405 problem.
		if a.status != http.StatusMethodNotAllowed || ct != "application/problem+json" {
			c.t.Fatalf("%s %s, an undocumented method, answered %s", method, path, a)
		}
		ptr = "/components/schemas/Problem"
	}
	sch, err := c.spec.Compile("mem:///openapi.json#" + ptr)
	if err != nil {
		c.t.Fatalf("%s %s answered %d %s, which the OpenAPI document does not describe (%v):\n%s", method, path, a.status, ct, err, b)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		c.t.Fatalf("%s %s: the body is not JSON: %v\n%s", method, path, err, b)
	}
	if err := sch.Validate(inst); err != nil {
		c.t.Fatalf("%s %s: the answer does not match the OpenAPI document: %v\n%s", method, path, err, b)
	}
	c.seen[method+" "+route+" "+strconv.Itoa(a.status)] = true
	return a
}

func (c *adminClient) json(method, route, path string, body any) adminAnswer {
	c.t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	ct := ""
	if b != nil {
		ct = "application/json"
	}
	return c.do(method, route, path, ct, b)
}

// documented reports whether the document has the operation.
func (c *adminClient) documented(route, method string) bool {
	_, err := c.spec.Compile("mem:///openapi.json#/paths/" + escapePointer(route) + "/" + strings.ToLower(method) + "/responses")
	return err == nil
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// want fails unless a has the status and, for a problem, the code.
func (c *adminClient) want(what string, a adminAnswer, status int, code string) {
	c.t.Helper()
	if a.status != status {
		c.t.Fatalf("%s: %s, want %d", what, a, status)
	}
	if code != "" {
		if p := a.problem(c.t); p.Code != code {
			c.t.Fatalf("%s: code %q, want %q: %s", what, p.Code, code, a)
		}
	}
}

type adminKey struct {
	ID         string            `json:"id"`
	Key        string            `json:"key"`
	Name       string            `json:"name"`
	Owner      string            `json:"owner"`
	Scopes     []string          `json:"scopes"`
	Metadata   map[string]string `json:"metadata"`
	Status     string            `json:"status"`
	Changed    bool              `json:"changed"`
	ReplacedBy string            `json:"replaced_by"`
}

func decodeKey(t *testing.T, a adminAnswer) adminKey {
	t.Helper()
	var k adminKey
	if err := json.Unmarshal(a.body, &k); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	return k
}

// auditCount is the number of events in the store's audit trail.
func (c *adminClient) auditCount() int {
	c.t.Helper()
	var events []json.RawMessage
	a := c.json("GET", "/api-keys/audit", "/api-keys/audit", nil)
	if err := json.Unmarshal(a.body, &events); err != nil {
		c.t.Fatal(err)
	}
	return len(events)
}

// TestAdminAPI: every route of the admin API through a real Caddy on both
// stores, each answer checked against the OpenAPI document; keys made
// there work at the gateway; every kind of bad input gets a clear 4xx and
// changes nothing; the audit trail records the caller.
func TestAdminAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		up := newUpstream(t)
		g := newGateway(t, sb)
		g.start(apiKeySite(g, up, "scopes orders:read"))
		waitForLog(t, g, watchingLog, 1, 20*time.Second)
		c := newAdminClient(t, g)

		a := c.json("POST", "/api-keys", "/api-keys", map[string]any{
			"name": "billing", "owner": "acme", "scopes": []string{"orders:*"},
			"metadata":   map[string]string{"plan": "gold", "team": "core"},
			"expires_at": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339),
			"limits":     map[string]any{"rate": "100/s"},
		})
		c.want("create", a, http.StatusCreated, "")
		k := decodeKey(t, a)
		if !strings.HasPrefix(k.Key, "kg_"+k.ID+"_") || a.header.Get("Location") != "/api-keys/"+k.ID {
			t.Fatalf("create: %s (Location %q)", a, a.header.Get("Location"))
		}
		wantUpstream(t, "a key made through the admin API", bearer(t, g.url+"/", k.Key))

		// Reading.
		if got := decodeKey(t, c.json("GET", "/api-keys/{id}", "/api-keys/"+k.ID, nil)); got.Name != "billing" || got.Status != "active" || got.Key != "" {
			t.Fatalf("get: %+v", got)
		}
		var page struct {
			Keys []adminKey `json:"keys"`
			Next string     `json:"next"`
		}
		other := decodeKey(t, c.json("POST", "/api-keys", "/api-keys", map[string]any{"name": "second", "owner": "globex"}))
		a = c.json("GET", "/api-keys", "/api-keys?limit=1", nil)
		c.want("list", a, http.StatusOK, "")
		json.Unmarshal(a.body, &page)
		if len(page.Keys) != 1 || page.Keys[0].ID != k.ID || page.Next != k.ID {
			t.Fatalf("first page: %s", a)
		}
		a = c.json("GET", "/api-keys", "/api-keys?limit=1&after="+page.Next, nil)
		page.Next = ""
		json.Unmarshal(a.body, &page)
		if len(page.Keys) != 1 || page.Keys[0].ID != other.ID {
			t.Fatalf("second page: %s", a)
		}
		a = c.json("GET", "/api-keys", "/api-keys?owner=globex&status=active", nil)
		if !strings.Contains(string(a.body), other.ID) || strings.Contains(string(a.body), k.ID) {
			t.Fatalf("owner filter: %s", a)
		}

		// Updating, seen by the gateway.
		a = c.json("PATCH", "/api-keys/{id}", "/api-keys/"+k.ID, `{"scopes":["billing:read"],"metadata":{"plan":null},"expires_at":null}`)
		c.want("update", a, http.StatusOK, "")
		if got := decodeKey(t, a); !got.Changed || got.Metadata["plan"] != "" || got.Metadata["team"] != "core" || strings.Join(got.Scopes, ",") != "billing:read" {
			t.Fatalf("update: %s", a)
		}
		if ok, _ := pollUntil(10*time.Second, 20*time.Millisecond, func() bool { return bearer(t, g.url+"/", k.Key).status == http.StatusForbidden }); !ok {
			t.Fatal("the gateway did not see the scopes changed through the admin API")
		}
		c.json("PATCH", "/api-keys/{id}", "/api-keys/"+k.ID, `{"scopes":["orders:read"]}`)

		// Bad input of every kind: a clear 4xx, and nothing changes.
		events := c.auditCount()
		for _, bad := range []struct {
			what, method, route, path, ct, body string
			status                              int
			code                                string
		}{
			{"malformed JSON", "POST", "/api-keys", "/api-keys", "application/json", `{"name":`, 400, "bad_request"},
			{"not an object", "POST", "/api-keys", "/api-keys", "application/json", `["x"]`, 400, "bad_request"},
			{"unknown field", "POST", "/api-keys", "/api-keys", "application/json", `{"name":"x","colour":"red"}`, 400, "bad_request"},
			{"wrong type", "POST", "/api-keys", "/api-keys", "application/json", `{"name":"x","scopes":"a"}`, 400, "bad_request"},
			{"wrong time", "POST", "/api-keys", "/api-keys", "application/json", `{"name":"x","expires_at":"tomorrow"}`, 400, "bad_request"},
			{"two objects", "POST", "/api-keys", "/api-keys", "application/json", `{"name":"x"}{"name":"y"}`, 400, "bad_request"},
			{"empty body", "POST", "/api-keys", "/api-keys", "application/json", ``, 400, "bad_request"},
			{"not JSON", "POST", "/api-keys", "/api-keys", "text/plain", `name=x`, 400, "bad_request"},
			{"no name", "POST", "/api-keys", "/api-keys", "application/json", `{"owner":"x"}`, 422, "invalid_field"},
			{"bad scope", "POST", "/api-keys", "/api-keys", "application/json", `{"name":"x","scopes":["a b"]}`, 422, "invalid_field"},
			{"past expiry", "POST", "/api-keys", "/api-keys", "application/json", `{"name":"x","expires_at":"2001-01-01T00:00:00Z"}`, 422, "invalid_field"},
			{"bad limit", "POST", "/api-keys", "/api-keys", "application/json", `{"name":"x","limits":{"rate":"fast"}}`, 422, "invalid_field"},
			{"bad network", "POST", "/api-keys", "/api-keys", "application/json", `{"name":"x","allow_cidrs":["10.0.0.300/8"]}`, 422, "invalid_field"},
			{"null name", "PATCH", "/api-keys/{id}", "/api-keys/" + k.ID, "application/json", `{"name":null}`, 422, "invalid_field"},
			{"nothing to change", "PATCH", "/api-keys/{id}", "/api-keys/" + k.ID, "application/json", `{}`, 422, "invalid_field"},
			{"unknown id", "GET", "/api-keys/{id}", "/api-keys/AAAAAAAAAAAA", "", ``, 404, "key_not_found"},
			{"not an id", "GET", "/api-keys/{id}", "/api-keys/nope", "", ``, 404, "key_not_found"},
			{"unknown id patch", "PATCH", "/api-keys/{id}", "/api-keys/AAAAAAAAAAAA", "application/json", `{"name":"x"}`, 404, "key_not_found"},
			{"unknown id revoke", "POST", "/api-keys/{id}/revoke", "/api-keys/AAAAAAAAAAAA/revoke", "", ``, 404, "key_not_found"},
			{"unknown id delete", "DELETE", "/api-keys/{id}", "/api-keys/AAAAAAAAAAAA", "", ``, 404, "key_not_found"},
			{"bad grace", "POST", "/api-keys/{id}/rotate", "/api-keys/" + k.ID + "/rotate", "application/json", `{"grace":"soon"}`, 422, "invalid_field"},
			{"grace too long", "POST", "/api-keys/{id}/rotate", "/api-keys/" + k.ID + "/rotate", "application/json", `{"grace":"9000h"}`, 422, "invalid_field"},
			{"body on revoke", "POST", "/api-keys/{id}/revoke", "/api-keys/" + k.ID + "/revoke", "application/json", `{"now":true}`, 400, "bad_request"},
			{"wrong method", "PUT", "/api-keys", "/api-keys", "application/json", `{}`, 405, "method_not_allowed"},
			{"wrong method on a key", "POST", "/api-keys/{id}", "/api-keys/" + k.ID, "application/json", `{}`, 405, "method_not_allowed"},
			{"unknown parameter", "GET", "/api-keys", "/api-keys?colour=red", "", ``, 400, "bad_request"},
			{"bad status", "GET", "/api-keys", "/api-keys?status=lost", "", ``, 400, "bad_request"},
			{"bad limit", "GET", "/api-keys", "/api-keys?limit=0", "", ``, 400, "bad_request"},
			{"bad cursor", "GET", "/api-keys", "/api-keys?after=AAAAAAAAAAAA", "", ``, 400, "bad_request"},
			{"bad since", "GET", "/api-keys/audit", "/api-keys/audit?since=yesterday", "", ``, 400, "bad_request"},
			{"bad bucket", "GET", "/api-keys/usage", "/api-keys/usage?by=week", "", ``, 400, "bad_request"},
			{"import without type", "POST", "/api-keys/import", "/api-keys/import", "", "key,name\n", 415, "unsupported_media_type"},
			{"oversized body", "POST", "/api-keys", "/api-keys", "application/json", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "body_too_large"},
		} {
			a := c.do(bad.method, bad.route, bad.path, bad.ct, []byte(bad.body))
			c.want(bad.what, a, bad.status, bad.code)
			if p := a.problem(t); p.Detail == "" || p.Status != bad.status {
				t.Errorf("%s: %s", bad.what, a)
			}
		}
		if a := c.do("PUT", "/api-keys", "/api-keys", "application/json", []byte(`{}`)); a.header.Get("Allow") != "GET, POST" {
			t.Errorf("405 Allow %q", a.header.Get("Allow"))
		}
		if n := c.auditCount(); n != events {
			t.Fatalf("bad requests changed the audit trail: %d events, want %d", n, events)
		}

		// Import: a bad file imports nothing and names its lines; a good
		// one, twice, imports once.
		a = c.do("POST", "/api-keys/import", "/api-keys/import", "text/csv", []byte("key,name\nlegacy-key-000000000001,ok\nshort,bad\n"))
		c.want("bad import", a, http.StatusUnprocessableEntity, "import_rejected")
		if p := a.problem(t); len(p.Rows) != 1 || p.Rows[0].Line != 3 {
			t.Fatalf("bad import rows: %s", a)
		}
		for i, want := range []string{`"imported":1`, `"existing":1`} {
			a = c.do("POST", "/api-keys/import", "/api-keys/import?format=jsonl", "application/octet-stream",
				[]byte(`{"key":"legacy-key-000000000001","name":"legacy"}`+"\n"))
			if a.status != http.StatusOK || !strings.Contains(string(a.body), want) {
				t.Fatalf("import %d: %s", i+1, a)
			}
		}

		// Rotation, revocation, deletion, each reaching the gateway.
		a = c.json("POST", "/api-keys/{id}/rotate", "/api-keys/"+k.ID+"/rotate", `{"grace":"0s"}`)
		c.want("rotate", a, http.StatusCreated, "")
		nk := decodeKey(t, a)
		wantUpstream(t, "the rotated key", bearer(t, g.url+"/", nk.Key))
		if ok, _ := pollUntil(10*time.Second, 20*time.Millisecond, func() bool { return bearer(t, g.url+"/", k.Key).status == http.StatusUnauthorized }); !ok {
			t.Fatal("the key rotated with grace 0 still works")
		}
		c.want("rotate a retired key", c.json("POST", "/api-keys/{id}/rotate", "/api-keys/"+k.ID+"/rotate", nil), http.StatusConflict, "conflict")
		a = c.json("POST", "/api-keys/{id}/revoke", "/api-keys/"+nk.ID+"/revoke", nil)
		if got := decodeKey(t, a); a.status != http.StatusOK || !got.Changed || got.Status != "revoked" {
			t.Fatalf("revoke: %s", a)
		}
		if got := decodeKey(t, c.json("POST", "/api-keys/{id}/revoke", "/api-keys/"+nk.ID+"/revoke", nil)); got.Changed {
			t.Fatal("revoking twice changed something")
		}
		c.want("change a revoked key", c.json("PATCH", "/api-keys/{id}", "/api-keys/"+nk.ID, `{"name":"x"}`), http.StatusConflict, "conflict")
		if ok, _ := pollUntil(10*time.Second, 20*time.Millisecond, func() bool { return bearer(t, g.url+"/", nk.Key).status == http.StatusUnauthorized }); !ok {
			t.Fatal("the key revoked through the admin API still works")
		}
		c.want("delete", c.json("DELETE", "/api-keys/{id}", "/api-keys/"+other.ID, nil), http.StatusOK, "")
		c.want("get a deleted key", c.json("GET", "/api-keys/{id}", "/api-keys/"+other.ID, nil), http.StatusNotFound, "key_not_found")

		// Usage, audit and its verification.
		c.want("key usage", c.json("GET", "/api-keys/{id}/usage", "/api-keys/"+k.ID+"/usage?since=1h&by=minute", nil), http.StatusOK, "")
		c.want("owner usage", c.json("GET", "/api-keys/usage", "/api-keys/usage?owner=acme&since=2026-01-01", nil), http.StatusOK, "")
		a = c.json("GET", "/api-keys/audit", "/api-keys/audit?key="+k.ID, nil)
		if !containsAll(string(a.body), `"action":"create"`, `"action":"update"`, `"action":"rotate"`, `"actor":"admin:127.0.0.1:`) {
			t.Fatalf("audit of the key:\n%s", a)
		}
		a = c.json("GET", "/api-keys/audit/verify", "/api-keys/audit/verify", nil)
		if a.status != http.StatusOK || !strings.Contains(string(a.body), `"ok":true`) {
			t.Fatalf("verify: %s", a)
		}
		c.json("GET", "/api-keys/openapi.json", "/api-keys/openapi.json", nil)
		// The public keys of identity tokens: none until a signing key
		// exists, then the one rotated in.
		if a := c.json("GET", "/api-keys/jwks", "/api-keys/jwks", nil); a.status != http.StatusOK || strings.TrimSpace(string(a.body)) != `{"keys":[]}` {
			t.Fatalf("jwks before any signing key: %s", a)
		}
		sb.mustCLI("signing-key", "rotate")
		if a := c.json("GET", "/api-keys/jwks", "/api-keys/jwks", nil); !containsAll(string(a.body), `"kty":"OKP"`, `"alg":"EdDSA"`) || strings.Contains(string(a.body), `"d":`) {
			t.Fatalf("jwks after a rotation: %s", a)
		}
		// The CLI sees what the admin API did.
		if res := sb.mustCLI("audit", "--key", k.ID); !strings.Contains(res.stdout, "admin:127.0.0.1:") {
			t.Errorf("the CLI's audit lacks the admin API's actor:\n%s", res.stdout)
		}
		t.Logf("checked %d documented responses", len(c.seen))
	})
}

// TestAdminAPIAcrossGateways: two gateways on one PostgreSQL store; a key
// made through one's admin API works at the other at once, and its
// revocation there reaches the other within the revocation bound.
func TestAdminAPIAcrossGateways(t *testing.T) {
	t.Parallel()
	f := newRevocationFixture(t, 2)
	c := newAdminClient(t, f.gws[0])
	a := c.json("POST", "/api-keys", "/api-keys", map[string]any{"name": "shared"})
	c.want("create", a, http.StatusCreated, "")
	k := decodeKey(t, a)
	wantUpstream(t, "a key made at the other gateway", bearer(t, f.gws[1].url+"/", k.Key))
	c.want("revoke", c.json("POST", "/api-keys/{id}/revoke", "/api-keys/"+k.ID+"/revoke", nil), http.StatusOK, "")
	ok, took := pollUntil(revocationLimit, 5*time.Millisecond, func() bool {
		return bearer(t, f.gws[1].url+"/", k.Key).status == http.StatusUnauthorized
	})
	if !ok {
		t.Fatalf("the other gateway still accepted the key %v after the admin API revoked it", revocationLimit)
	}
	t.Logf("revocation through one gateway's admin API refused by the other after %v", took)
}
