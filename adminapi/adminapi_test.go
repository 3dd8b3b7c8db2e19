package adminapi

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestActorOf: the audit trail's actor is the client certificate's
// subject when Caddy's remote admin endpoint verified one (the TLS state
// is built here: a real remote admin endpoint needs Caddy's identity
// certificates), else the caller's address; odd subjects are quoted and
// cut to a valid actor.
func TestActorOf(t *testing.T) {
	withCert := func(cert *x509.Certificate) string {
		r := httptest.NewRequest("GET", Prefix, nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		return actorOf(r)
	}
	for _, c := range []struct {
		cert *x509.Certificate
		want string
	}{
		{&x509.Certificate{Subject: pkix.Name{CommonName: "billing-service"}}, "admin:cert:billing-service"},
		{&x509.Certificate{DNSNames: []string{"ops.example.com"}}, "admin:cert:ops.example.com"},
		{&x509.Certificate{SerialNumber: big.NewInt(42)}, "admin:cert:serial 42"},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "evil\nname"}}, `"admin:cert:evil\nname"`},
	} {
		if got := withCert(c.cert); got != c.want {
			t.Errorf("actor %q, want %q", got, c.want)
		}
	}
	long := withCert(&x509.Certificate{Subject: pkix.Name{CommonName: strings.Repeat("x", 500)}})
	if len(long) != keystore.MaxActorLen || keystore.ValidateActor(long) != nil {
		t.Errorf("a long subject gives actor of %d bytes: %v", len(long), keystore.ValidateActor(long))
	}
	r := httptest.NewRequest("GET", Prefix, nil)
	r.RemoteAddr = "127.0.0.1:51234"
	if got := actorOf(r); got != "admin:127.0.0.1:51234" {
		t.Errorf("actor %q", got)
	}
	r.RemoteAddr = "@"
	if got := actorOf(r); got != "admin:unix" {
		t.Errorf("actor over a unix socket %q", got)
	}
}

// TestOpenAPIDocument: the document is OpenAPI 3.1 and names every route
// the handler serves.
func TestOpenAPIDocument(t *testing.T) {
	doc := string(OpenAPI())
	if !strings.Contains(doc, `"openapi": "3.1.0"`) {
		t.Fatal("not an OpenAPI 3.1 document")
	}
	for _, p := range []string{"", "openapi.json", "usage", "audit", "audit/verify", "import", "jwks", "AAAAAAAAAAAA", "AAAAAAAAAAAA/rotate", "AAAAAAAAAAAA/revoke", "AAAAAAAAAAAA/usage"} {
		routes, id, ok := match(p)
		if !ok {
			t.Fatalf("no route for %q", p)
		}
		path := strings.TrimSuffix(Prefix+"/"+strings.Replace(p, "AAAAAAAAAAAA", "{id}", 1), "/")
		if id == "" && strings.Contains(path, "{id}") {
			t.Fatalf("%q: no id", p)
		}
		if !strings.Contains(doc, `"`+path+`": {`) {
			t.Errorf("the document lacks %s", path)
		}
		for _, r := range routes {
			if !strings.Contains(doc, `"operationId"`) || !strings.Contains(doc, `"`+strings.ToLower(r.method)+`": {`) {
				t.Errorf("the document lacks %s %s", r.method, path)
			}
		}
	}
}
