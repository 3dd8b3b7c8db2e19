package caddymodule

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/keystore"
)

// redactingLogger writes through a provisioned RedactEncoder (wrapping
// the given encoder, or the default) into a buffer.
func redactingLogger(t *testing.T, wrap string) (*zap.Logger, *bytes.Buffer) {
	t.Helper()
	re := &RedactEncoder{}
	if wrap != "" {
		d := caddyfile.NewTestDispenser("redact_api_keys {\n wrap " + wrap + "\n}")
		if err := re.UnmarshalCaddyfile(d); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	t.Cleanup(cancel)
	if err := re.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	return zap.New(zapcore.NewCore(re, zapcore.AddSync(&buf), zapcore.DebugLevel)), &buf
}

func TestRedactEncoder(t *testing.T) {
	f, _ := keystore.NewFormat("")
	key, id, _ := f.Generate()
	secret := key[len(key)-49:]
	for _, wrap := range []string{"", "json", "console"} {
		t.Run("wrap "+wrap, func(t *testing.T) {
			log, buf := redactingLogger(t, wrap)
			req := httptest.NewRequest("GET", "/orders?api_key="+key+"&page=2", nil)
			req.Header.Set("X-API-Key", key)
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Add("Cookie", "api_key="+key)
			req.Header.Set("X-"+key, "a key as a header name")
			log.With(zap.String("context", key)).Error("upstream failed for "+key,
				zap.Object("request", caddyhttp.LoggableHTTPRequest{Request: req, ShouldLogCredentials: true}),
				zap.Error(errors.New("dial: "+key)),
				zap.Strings("list", []string{"a", key}),
				zap.ByteString("bytes", []byte(key)),
				zap.Any("reflected", map[string]any{"k": []string{key}}),
				zap.Stringer("stringer", stringer(key)),
				zap.Namespace("ns"),
				zap.String("inner", key),
			)
			out := buf.String()
			if strings.Contains(out, secret) || strings.Contains(out, secret[:16]) {
				t.Fatalf("the secret is in the log:\n%s", out)
			}
			// Every place still names the key by its id.
			if n := strings.Count(out, "kg_"+id+"_"+keystore.Redacted); n < 12 {
				t.Fatalf("%d redacted keys in the output, want at least 12:\n%s", n, out)
			}
			if !strings.Contains(out, "page=2") {
				t.Fatalf("the rest of the URI was lost:\n%s", out)
			}
		})
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestRedactEncoderCaddyfile(t *testing.T) {
	for _, bad := range []string{
		"redact_api_keys arg",
		"redact_api_keys {\n fields x\n}",
		"redact_api_keys {\n wrap\n}",
		"redact_api_keys {\n wrap json\n wrap console\n}",
		"redact_api_keys {\n wrap nosuchencoder\n}",
	} {
		if err := new(RedactEncoder).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
