package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"

	"github.com/keygate/keygate/keystore"
)

func init() {
	caddy.RegisterModule(RedactEncoder{})
}

// RedactEncoder is a log encoder that masks the secret of every Keygate
// key in every field of every log entry (any header, the URI with its
// query, cookies, messages and errors) before another encoder writes it.
// Caddy's access and error logs copy each request before any handler runs
// and redact only Authorization, Proxy-Authorization and Cookie, so a key
// sent in another header or in the query would otherwise be logged as
// sent. Keys identify themselves (prefix, id, secret), so one encoder
// covers every place they can appear; the prefix and the public key id
// are kept, so a line still says which key was used.
//
// Caddyfile: `format redact_api_keys` in a `log` block, optionally
// `format redact_api_keys { wrap console }`.
type RedactEncoder struct {
	zapcore.Encoder `json:"-"`

	// WrappedRaw is the encoder that writes the entries. Default: json,
	// or console when the output is a terminal, as for Caddy's own
	// default.
	WrappedRaw json.RawMessage `json:"wrap,omitempty" caddy:"namespace=caddy.logging.encoders inline_key=format"`

	wrappedIsDefault bool
	ctx              caddy.Context
}

// CaddyModule returns the Caddy module information.
func (RedactEncoder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.redact_api_keys",
		New: func() caddy.Module { return new(RedactEncoder) },
	}
}

// Provision sets up the wrapped encoder.
func (re *RedactEncoder) Provision(ctx caddy.Context) error {
	re.ctx = ctx
	if re.WrappedRaw == nil {
		je := &logging.JSONEncoder{}
		if err := je.Provision(ctx); err != nil {
			return fmt.Errorf("provisioning default encoder: %v", err)
		}
		re.Encoder = je
		re.wrappedIsDefault = true
		return nil
	}
	val, err := ctx.LoadModule(re, "WrappedRaw")
	if err != nil {
		return fmt.Errorf("loading wrapped encoder: %v", err)
	}
	re.Encoder = val.(zapcore.Encoder)
	return nil
}

// ConfigureDefaultFormat picks the console format for a terminal when no
// wrapped encoder is configured, like Caddy does for its default logger.
func (re *RedactEncoder) ConfigureDefaultFormat(wo caddy.WriterOpener) error {
	if !re.wrappedIsDefault {
		if cfd, ok := re.Encoder.(caddy.ConfiguresFormatterDefault); ok {
			return cfd.ConfigureDefaultFormat(wo)
		}
		return nil
	}
	if caddy.IsWriterStandardStream(wo) && term.IsTerminal(int(os.Stderr.Fd())) {
		ce := &logging.ConsoleEncoder{}
		if err := ce.Provision(re.ctx); err != nil {
			return fmt.Errorf("provisioning default encoder: %v", err)
		}
		re.Encoder = ce
	}
	return nil
}

// UnmarshalCaddyfile sets up the encoder from Caddyfile tokens. Syntax:
//
//	redact_api_keys {
//		wrap <another encoder>
//	}
func (re *RedactEncoder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume encoder name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() != "wrap" {
			return d.Errf("unrecognized redact_api_keys option '%s' (only 'wrap <encoder>')", d.Val())
		}
		if re.WrappedRaw != nil {
			return d.Err("wrap given more than once")
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		name := d.Val()
		unm, err := caddyfile.UnmarshalModule(d, "caddy.logging.encoders."+name)
		if err != nil {
			return err
		}
		enc, ok := unm.(zapcore.Encoder)
		if !ok {
			return d.Errf("module %s is not a log encoder", name)
		}
		re.WrappedRaw = caddyconfig.JSONModuleObject(enc, "format", name, nil)
	}
	return nil
}

// Clone implements zapcore.Encoder.
func (re *RedactEncoder) Clone() zapcore.Encoder {
	return &RedactEncoder{Encoder: re.Encoder.Clone()}
}

// EncodeEntry implements zapcore.Encoder: the fields go through the
// redacting methods into a clone of the wrapped encoder, which then
// writes the entry.
func (re *RedactEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	clone := re.Encoder.Clone()
	enc := redactingObject{clone}
	for _, f := range fields {
		f.AddTo(enc)
	}
	ent.Message = redact(ent.Message)
	ent.Stack = redact(ent.Stack)
	return clone.EncodeEntry(ent, nil)
}

// The methods below redact what RedactEncoder receives directly (context
// fields added with Logger.With); redactingObject does the same inside
// nested objects.

func (re *RedactEncoder) AddString(k, v string) { redactingObject{re.Encoder}.AddString(k, v) }
func (re *RedactEncoder) AddByteString(k string, v []byte) {
	redactingObject{re.Encoder}.AddByteString(k, v)
}
func (re *RedactEncoder) AddArray(k string, v zapcore.ArrayMarshaler) error {
	return redactingObject{re.Encoder}.AddArray(k, v)
}
func (re *RedactEncoder) AddObject(k string, v zapcore.ObjectMarshaler) error {
	return redactingObject{re.Encoder}.AddObject(k, v)
}
func (re *RedactEncoder) AddReflected(k string, v any) error {
	return redactingObject{re.Encoder}.AddReflected(k, v)
}
func (re *RedactEncoder) OpenNamespace(k string) { redactingObject{re.Encoder}.OpenNamespace(k) }

func redact(s string) string {
	out, found := keystore.RedactKeys(s)
	if found {
		noteRedacted(s)
	}
	return out
}

// redactingObject masks keys in the string values and field names passed
// through it; other values pass unchanged.
type redactingObject struct{ zapcore.ObjectEncoder }

func (o redactingObject) AddString(k, v string) { o.ObjectEncoder.AddString(redact(k), redact(v)) }
func (o redactingObject) AddByteString(k string, v []byte) {
	o.ObjectEncoder.AddByteString(redact(k), []byte(redact(string(v))))
}
func (o redactingObject) AddArray(k string, v zapcore.ArrayMarshaler) error {
	return o.ObjectEncoder.AddArray(redact(k), redactingArrayMarshaler{v})
}
func (o redactingObject) AddObject(k string, v zapcore.ObjectMarshaler) error {
	return o.ObjectEncoder.AddObject(redact(k), redactingObjectMarshaler{v})
}
func (o redactingObject) AddReflected(k string, v any) error {
	return o.ObjectEncoder.AddReflected(redact(k), redactReflected(v))
}
func (o redactingObject) OpenNamespace(k string) { o.ObjectEncoder.OpenNamespace(redact(k)) }

// redactReflected encodes v as JSON, the way zap's encoders would, and
// returns the redacted encoding if it held a key.
func redactReflected(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	if out, found := keystore.RedactKeys(string(b)); found {
		return json.RawMessage(out)
	}
	return v
}

type redactingObjectMarshaler struct{ zapcore.ObjectMarshaler }

func (m redactingObjectMarshaler) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	return m.ObjectMarshaler.MarshalLogObject(redactingObject{enc})
}

type redactingArrayMarshaler struct{ zapcore.ArrayMarshaler }

func (m redactingArrayMarshaler) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	return m.ArrayMarshaler.MarshalLogArray(redactingArray{enc})
}

// redactingArray masks keys in the strings appended through it.
type redactingArray struct{ zapcore.ArrayEncoder }

func (a redactingArray) AppendString(v string) { a.ArrayEncoder.AppendString(redact(v)) }
func (a redactingArray) AppendByteString(v []byte) {
	a.ArrayEncoder.AppendByteString([]byte(redact(string(v))))
}
func (a redactingArray) AppendArray(v zapcore.ArrayMarshaler) error {
	return a.ArrayEncoder.AppendArray(redactingArrayMarshaler{v})
}
func (a redactingArray) AppendObject(v zapcore.ObjectMarshaler) error {
	return a.ArrayEncoder.AppendObject(redactingObjectMarshaler{v})
}
func (a redactingArray) AppendReflected(v any) error {
	return a.ArrayEncoder.AppendReflected(redactReflected(v))
}

// Interface guards
var (
	_ zapcore.Encoder                  = (*RedactEncoder)(nil)
	_ caddy.Provisioner                = (*RedactEncoder)(nil)
	_ caddy.ConfiguresFormatterDefault = (*RedactEncoder)(nil)
	_ caddyfile.Unmarshaler            = (*RedactEncoder)(nil)
)
