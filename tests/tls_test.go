package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRequireTLSThroughCaddy: with require_tls, a key sent over plain
// HTTP from a peer outside the plain networks gets 403 tls_required and
// the gateway logs the key id as exposed; the same key over HTTPS on the
// same gateway works.
func TestRequireTLSThroughCaddy(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	k := sb.createKey("over the wire", "--owner", "acme")
	certFile, keyFile := selfSignedCert(t, sb.dir)
	tlsPort := freePort(t)
	g := newGateway(t, sb)
	// Loopback is allowed plain HTTP by default: list another network so
	// that this test's loopback client counts as remote.
	site := func(extra string) string {
		return fmt.Sprintf("\tapi_key {\n\t\trequire_tls 192.0.2.0/24\n\t}\n\treverse_proxy %s%s", up.hostPort(), extra)
	}
	g.start(g.site(site(""))+
		fmt.Sprintf("https://127.0.0.1:%d {\n\tbind 127.0.0.1\n\ttls %s %s\n%s\n}\n", tlsPort, certFile, keyFile, site("")), tlsPort)

	r := bearer(t, g.url+"/", k.Key)
	wantStatus(t, "a key over plain HTTP", r, http.StatusForbidden)
	if p := r.problem(t); p.Code != "tls_required" || !strings.Contains(p.Detail, "exposed") {
		t.Errorf("problem %+v", p)
	}
	waitForLog(t, g, "api key sent over plain HTTP", 1, 10*time.Second)
	log := g.log()
	if !strings.Contains(log, `"key_id":"`+k.ID+`"`) || strings.Contains(log, secretOf(k.Key)) {
		t.Fatalf("the exposure line lacks the key id, or a log holds the key:\n%s", log)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/", tlsPort), nil)
	req.Header.Set("Authorization", "Bearer "+k.Key)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("the key over HTTPS: %d", res.StatusCode)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}
