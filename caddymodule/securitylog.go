package caddymodule

import (
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The security log: one structured line per refused request ("api key
// refused": reason, key id when the key parsed, client IP), at most
// refusalLinesPerSecond a second per handler; beyond that, lines are
// counted, not written. Every minute with refusals, one line sums them up
// by reason ("api key refusals"), unwritten ones included, so that a flood
// shows in the log at a bounded cost and the counts are never lost. No
// field holds a value the client chose as it sent it: the reason is a
// fixed code, the key id passed the key format's checks, the client IP is
// Caddy's parsed address.
const (
	refusalLinesPerSecond = 10
	refusalSummaryEvery   = time.Minute
)

type securityLog struct {
	lines   *zap.Logger // sampled
	summary *zap.Logger
	mu      sync.Mutex
	counts  map[string]uint64 // refusals by reason since the last summary
	skipped atomic.Uint64     // lines the sampler dropped since the last summary
	stop    chan struct{}
	done    chan struct{}
}

func newSecurityLog(logger *zap.Logger) *securityLog {
	s := &securityLog{summary: logger, counts: map[string]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	s.lines = logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, refusalLinesPerSecond, 0,
			zapcore.SamplerHook(func(_ zapcore.Entry, d zapcore.SamplingDecision) {
				if d&zapcore.LogDropped != 0 {
					s.skipped.Add(1)
				}
			}))
	}))
	go s.loop()
	return s
}

// refused records a refusal with reason code; keyID is empty when the key
// did not parse.
func (s *securityLog) refused(r *http.Request, code, keyID string) {
	if s == nil {
		return // a handler that is not provisioned serves nothing
	}
	s.mu.Lock()
	s.counts[code]++
	s.mu.Unlock()
	if ce := s.lines.Check(zapcore.InfoLevel, "api key refused"); ce != nil {
		fields := []zap.Field{zap.String("reason", code), zap.String("client_ip", clientIP(r))}
		if keyID != "" {
			fields = append(fields, zap.String("key_id", keyID))
		}
		ce.Write(fields...)
	}
}

func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		return ip
	}
	return ""
}

func (s *securityLog) loop() {
	defer close(s.done)
	t := time.NewTicker(refusalSummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.flush()
			return
		case <-t.C:
			s.flush()
		}
	}
}

// flush writes the summary of the refusals since the last one, if any.
func (s *securityLog) flush() {
	s.mu.Lock()
	counts := s.counts
	if len(counts) > 0 {
		s.counts = map[string]uint64{}
	}
	s.mu.Unlock()
	if len(counts) == 0 {
		return
	}
	var total uint64
	fields := make([]zap.Field, 0, len(counts)+2)
	for _, code := range slices.Sorted(maps.Keys(counts)) {
		total += counts[code]
		fields = append(fields, zap.Uint64(code, counts[code]))
	}
	s.summary.Info("api key refusals", append(fields, zap.Uint64("total", total), zap.Uint64("not_logged_one_by_one", s.skipped.Swap(0)))...)
}

// close writes the last summary and stops.
func (s *securityLog) close() {
	if s == nil {
		return
	}
	close(s.stop)
	<-s.done
}
