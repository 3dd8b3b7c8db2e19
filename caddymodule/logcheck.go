package caddymodule

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/keystore"
)

// Caddy's HTTP server logs a copy of each request, taken before any
// handler runs, to its access logs and, when a handler fails (say,
// reverse_proxy cannot reach the upstream), to its error log. It redacts
// only these headers; a key from any other header, or from the query, is
// logged as sent unless the log uses RedactEncoder.
var caddyRedactedHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

// exposedSources returns the sources whose keys Caddy's request logs would
// record: headers Caddy does not redact and the query always, bearer and
// cookie sources too when the server logs credentials.
func exposedSources(sources []KeySource, logCredentials bool) []string {
	var out []string
	for _, s := range sources {
		exposed := false
		switch s.From {
		case FromHeader:
			exposed = logCredentials || !slices.Contains(caddyRedactedHeaders, s.Name)
		case FromQuery:
			exposed = true
		case FromBearer, FromCookie:
			exposed = logCredentials
		}
		if exposed {
			out = append(out, s.String())
		}
	}
	return out
}

// requestLoggers returns the names of the loggers the servers of app write
// request copies to: the error loggers of every server and the access
// loggers of those that log requests; and whether any server that logs
// requests logs credentials too. A server with `logs` sends both kinds to
// the logger names its hosts map to ("" is the bare name, which reaches
// Caddy's default log), one without sends errors to the bare name only.
func requestLoggers(app *caddyhttp.App) (errorLogs, accessLogs []string, logCredentials bool) {
	add := func(list []string, name string) []string {
		if !slices.Contains(list, name) {
			list = append(list, name)
		}
		return list
	}
	for _, srv := range app.Servers {
		if srv.Logs == nil {
			errorLogs = add(errorLogs, "http.log.error")
			continue
		}
		logCredentials = logCredentials || srv.Logs.ShouldLogCredentials
		var names []string
		for _, mapped := range srv.Logs.LoggerNames {
			names = append(names, mapped...)
		}
		if len(names) == 0 || srv.Logs.DefaultLoggerName != "" {
			names = append(names, srv.Logs.DefaultLoggerName)
		}
		for _, n := range names {
			sfx := ""
			if n != "" {
				sfx = "." + n
			}
			errorLogs = add(errorLogs, "http.log.error"+sfx)
			accessLogs = add(accessLogs, "http.log.access"+sfx)
		}
	}
	return errorLogs, accessLogs, logCredentials
}

// probes are the sentinels of the log checks in progress; redact marks the
// one it sees.
var (
	probes      sync.Map // sentinel key string -> *logProbe
	probesCount atomic.Int32
)

// logProbe finds out whether the log cores of a logger redact keys. It is
// added to the logger with With, which makes every core encode it into a
// copy of its encoder without writing anything: each core that passes its
// sentinel key through RedactEncoder marks it.
type logProbe struct {
	sentinel  string
	redacted  atomic.Int32
	exposed   int
	protected int
}

func (p *logProbe) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	before := p.redacted.Load()
	enc.AddString("sentinel", p.sentinel)
	if p.redacted.Load() > before {
		p.protected++
	} else {
		p.exposed++
	}
	return nil
}

// noteRedacted marks the probe whose sentinel s held, if any.
func noteRedacted(s string) {
	if probesCount.Load() == 0 {
		return
	}
	probes.Range(func(k, v any) bool {
		if strings.Contains(s, k.(string)) {
			v.(*logProbe).redacted.Add(1)
		}
		return true
	})
}

// loggerName is a stand-in module whose ID is a logger name, to obtain the
// log cores Caddy's configuration sends that logger's entries to.
type loggerName string

func (n loggerName) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: caddy.ModuleID(n), New: func() caddy.Module { return n }}
}

// logsExposing returns those of names whose log entries would reach a log
// that does not redact keys of format f.
func logsExposing(ctx caddy.Context, names []string, f keystore.Format) []string {
	var out []string
	for _, name := range names {
		sentinel, _, err := f.Generate()
		if err != nil {
			continue
		}
		p := &logProbe{sentinel: sentinel}
		probes.Store(sentinel, p)
		probesCount.Add(1)
		//nolint:staticcheck // the module form of Logger is the only way to get another logger's cores
		ctx.Logger(loggerName(name)).With(zap.Object("keygate_log_check", p))
		probesCount.Add(-1)
		probes.Delete(sentinel)
		if p.exposed > 0 {
			out = append(out, name)
		}
	}
	return out
}

// warned remembers which warnings were given for a configuration, so that
// several api_key handlers with the same sources warn once.
var warned sync.Map // warnKey -> struct{}

type warnKey struct {
	app *caddyhttp.App
	msg string
}

// httpApp returns the HTTP app being provisioned with the handler, or nil
// (in tests that provision a handler alone).
func httpApp(ctx caddy.Context) *caddyhttp.App {
	for _, m := range ctx.Modules() {
		if a, ok := m.(*caddyhttp.App); ok {
			return a
		}
	}
	return nil
}

// warnOnce logs msg once per configuration load, however many handlers
// find the same problem.
func (h *Handler) warnOnce(ctx caddy.Context, app *caddyhttp.App, msg string, fields ...zap.Field) {
	key := warnKey{app, msg}
	if _, done := warned.LoadOrStore(key, struct{}{}); done {
		return
	}
	ctx.OnCancel(func() { warned.Delete(key) })
	h.logger.Warn(msg, fields...)
}

// checkLogRedaction warns when Caddy's request logs may record the keys
// this handler accepts, with the lines that fix it. It looks at every
// server and log of the configuration (a handler does not know which
// server it is in), and at the loggers servers map hosts to; loggers
// chosen per request with log_name are not seen.
func (h *Handler) checkLogRedaction(ctx caddy.Context) {
	app := httpApp(ctx)
	if app == nil {
		return
	}
	errorLogs, accessLogs, logCredentials := requestLoggers(app)
	sources := exposedSources(h.sources, logCredentials)
	if len(sources) == 0 {
		return
	}
	exposed := append(logsExposing(ctx, errorLogs, h.format), logsExposing(ctx, accessLogs, h.format)...)
	if len(exposed) == 0 {
		return
	}
	// The bare names go to Caddy's default log, which the global log
	// option configures; the others to a site's own log.
	global, perSite := false, false
	for _, name := range exposed {
		if name == "http.log.error" || name == "http.log.access" {
			global = true
		} else if strings.HasPrefix(name, "http.log.access.") {
			perSite = true
		} else {
			// A site's error log entries go to Caddy's default log too,
			// unless the configuration routes them elsewhere.
			global = true
		}
	}
	var fix []string
	if global {
		fix = append(fix, "in the global options: log {\n\tformat redact_api_keys\n}")
	}
	if perSite {
		fix = append(fix, "in every site's log directive: log {\n\tformat redact_api_keys\n}")
	}
	msg := "Caddy's request logs would record the API keys this handler accepts (" + strings.Join(sources, ", ") +
		"): add Keygate's redacting log encoder " + strings.Join(fix, " and ") +
		" (to keep another format, wrap it: format redact_api_keys { wrap console })"
	h.warnOnce(ctx, app, msg, zap.Strings("exposed_loggers", exposed))
}
