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
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRequireTLSThroughCaddy: with require_tls 127.0.0.1/32, a key sent
// over plain HTTP from 127.0.0.2 gets 403 tls_required and the gateway
// logs the key id as exposed; from 127.0.0.1, and over HTTPS from
// 127.0.0.2, the same key works.
func TestRequireTLSThroughCaddy(t *testing.T) {
	t.Parallel()
	sb := newSandbox(t, sqliteStore)
	up := newUpstream(t)
	k := sb.createKey("over the wire", "--owner", "acme")
	certFile, keyFile := selfSignedCert(t, sb.dir)
	tlsPort := freePort(t)
	g := newGateway(t, sb)
	site := func(extra string) string {
		return fmt.Sprintf("\tapi_key {\n\t\trequire_tls 127.0.0.1/32\n\t}\n\treverse_proxy %s%s", up.hostPort(), extra)
	}
	g.start(g.site(site(""))+
		fmt.Sprintf("https://127.0.0.1:%d {\n\tbind 127.0.0.1\n\ttls %s %s\n%s\n}\n", tlsPort, certFile, keyFile, site("")), tlsPort)

	// 127.0.0.2 is a loopback address too, but not on the list.
	other := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	fromOther := &http.Client{Transport: &http.Transport{DialContext: other.DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	call := func(c *http.Client, url string) response {
		t.Helper()
		req := newRequest(t, url, "Authorization", "Bearer "+k.Key)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return response{status: res.StatusCode, header: res.Header, body: body}
	}
	r := call(fromOther, g.url+"/")
	wantStatus(t, "a key over plain HTTP from 127.0.0.2", r, http.StatusForbidden)
	if p := r.problem(t); p.Code != "tls_required" || !strings.Contains(p.Detail, "exposed") {
		t.Errorf("problem %+v", p)
	}
	waitForLog(t, g, "api key sent over plain HTTP", 1, 10*time.Second)
	log := g.log()
	if !strings.Contains(log, `"key_id":"`+k.ID+`"`) || strings.Contains(log, secretOf(k.Key)) {
		t.Fatalf("the exposure line lacks the key id, or a log holds the key:\n%s", log)
	}

	wantUpstream(t, "a key over plain HTTP from the listed 127.0.0.1", bearer(t, g.url+"/", k.Key))
	wantUpstream(t, "a key over HTTPS from 127.0.0.2", call(fromOther, fmt.Sprintf("https://127.0.0.1:%d/", tlsPort)))
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
