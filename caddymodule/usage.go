package caddymodule

import (
	"errors"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// metered runs decide for a request whose key the store knows and counts
// it in the key's usage: its final status (Keygate's own refusals
// included), the request and response body bytes, and the time it took
// from the moment the handler got it.
func (h *Handler) metered(w http.ResponseWriter, x *exchange, next caddyhttp.Handler) error {
	m := &x.adm.meter
	m.ResponseWriterWrapper = caddyhttp.ResponseWriterWrapper{ResponseWriter: w}
	if r := x.r; r.Body != nil && r.Body != http.NoBody {
		m.body.ReadCloser = r.Body
		r.Body = &m.body
	}
	err := h.decide(m, x, next)
	end := h.clock.Now()
	h.usage.Record(x.key.ID, x.key.Owner, end, m.statusFor(err), m.body.n, m.out, end.Sub(x.now))
	return err
}

// meter sees what a request's handlers wrote: the status and the body
// bytes. It wraps with caddyhttp.ResponseWriterWrapper, which keeps
// Flush, Hijack and Push working through http.ResponseController.
type meter struct {
	caddyhttp.ResponseWriterWrapper
	status int
	out    int64
	body   countingBody
}

func (m *meter) WriteHeader(code int) {
	// Informational answers (103 Early Hints) come before the final one;
	// 101 Switching Protocols is final.
	if m.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		m.status = code
	}
	m.ResponseWriterWrapper.WriteHeader(code)
}

func (m *meter) Write(b []byte) (int, error) {
	if m.status == 0 {
		m.status = http.StatusOK
	}
	n, err := m.ResponseWriterWrapper.Write(b)
	m.out += int64(n)
	return n, err
}

func (m *meter) ReadFrom(src io.Reader) (int64, error) {
	if m.status == 0 {
		m.status = http.StatusOK
	}
	n, err := m.ResponseWriterWrapper.ReadFrom(src)
	m.out += n
	return n, err
}

// statusFor is the status the client got: the one written, else the one
// Caddy writes for the handler's error, else 200.
func (m *meter) statusFor(err error) int {
	switch {
	case m.status != 0:
		return m.status
	case err == nil:
		return http.StatusOK
	}
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		return he.StatusCode
	}
	return http.StatusInternalServerError
}

// countingBody counts the request body bytes the handlers read.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}
