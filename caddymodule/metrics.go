package caddymodule

import (
	"errors"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Metrics are created once and registered with every config's registry
// (Caddy serves them at the admin endpoint's /metrics). Labels never hold
// keys or key ids: their number would be unbounded.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "api_key",
		Name:      "requests_total",
		Help:      "Requests seen by the api_key handler, by result (ok or the error code).",
	}, []string{"result"})

	heldTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "api_key",
		Name:      "over_budget_answers_total",
		Help:      "429 answers to clients out of their budget of failed key checks: held for failed_auth_limit's delay (held), or sent at once because as many as allowed were held already, in all or for the client (full).",
	}, []string{"result"})

	cacheCollector = &keygateCollector{
		lookups: prometheus.NewDesc("caddy_api_key_cache_lookups_total",
			"Key verifications by where the answer came from: hit, stale, negative or miss.", []string{"result"}, nil),
		queries: prometheus.NewDesc("caddy_api_key_store_queries_total",
			"Queries sent to the key store.", nil, nil),
		errors: prometheus.NewDesc("caddy_api_key_store_errors_total",
			"Key store queries that failed or timed out.", nil, nil),
		invalidations: prometheus.NewDesc("caddy_api_key_cache_invalidations_total",
			"Keys dropped from the cache because they changed.", nil, nil),
		purges: prometheus.NewDesc("caddy_api_key_cache_purges_total",
			"Times the whole cache was dropped.", nil, nil),
		busy: prometheus.NewDesc("caddy_api_key_store_busy_total",
			"Key lookups refused (503) because no store query slot was free in time: the store is busy, not down.", nil, nil),
		abandoned: prometheus.NewDesc("caddy_api_key_store_abandoned_total",
			"Key lookups cancelled because every request waiting for them had gone.", nil, nil),
		resyncs: prometheus.NewDesc("caddy_api_key_watch_resyncs_total",
			"Times a key change watch (re)connected and asked for the caches to be purged; purges are budgeted, so caddy_api_key_cache_purges_total may count fewer.", nil, nil),
		malformed: prometheus.NewDesc("caddy_api_key_malformed_changes_total",
			"Key change notifications ignored because they were not key digests (not sent by Keygate).", nil, nil),
		usageRecorded: prometheus.NewDesc("caddy_api_key_usage_recorded_total",
			"Requests counted by usage metering.", nil, nil),
		usageWritten: prometheus.NewDesc("caddy_api_key_usage_written_total",
			"Requests whose usage counts the key store has taken.", nil, nil),
		usageDropped: prometheus.NewDesc("caddy_api_key_usage_dropped_total",
			"Requests not counted: the usage buffer was full, or the store did not take the last counts at shutdown.", nil, nil),
		usageBuffered: prometheus.NewDesc("caddy_api_key_usage_buffered_rows",
			"Usage rows (one per key and minute) held in memory until the store takes them.", nil, nil),
		usageBatches: prometheus.NewDesc("caddy_api_key_usage_batches_written_total",
			"Usage batches the key store has taken.", nil, nil),
		usageErrors: prometheus.NewDesc("caddy_api_key_usage_write_errors_total",
			"Failed usage batch writes (each is retried).", nil, nil),
		auditEvents: prometheus.NewDesc("caddy_api_key_audit_events",
			"Events in the audit chains of the key stores in use (written by every process: CLI, admin API), read every minute.", nil, nil),
	}
)

// The result label values of requestsTotal, created up front so that
// every series exists from the start.
var requestResults = []string{"ok", CodeMissingKey, CodeInvalidKey, CodeExpiredKey, CodeNotYetValid, CodeInsufficientScope,
	CodeStoreUnavailable, CodeTooManyFailures, CodeTooManyPending, CodeCrossOrigin, CodeRateLimited, CodeQuotaExceeded, CodeUsesExhausted, CodeIPNotAllowed, CodeTLSRequired}

// requestCounters avoids a label lookup per request.
var requestCounters = map[string]prometheus.Counter{}

func init() {
	for _, r := range requestResults {
		requestCounters[r] = requestsTotal.WithLabelValues(r)
	}
}

func countRequest(result string) { requestCounters[result].Inc() }

var heldCounters = map[string]prometheus.Counter{
	"held": heldTotal.WithLabelValues("held"),
	"full": heldTotal.WithLabelValues("full"),
}

func countHeld(result string) { heldCounters[result].Inc() }

func registerMetrics(ctx caddy.Context) {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{requestsTotal, heldTotal, cacheCollector} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				ctx.Logger().Warn("registering api_key metrics", zap.Error(err))
			}
		}
	}
}

// totals are the counters of the caches, stores and usage recorders of
// the process.
type totals struct {
	hits, stale, negative, misses, queries, errs, inval, purges, busy, abandoned uint64
	resyncs, malformed                                                           uint64
	recorded, written, dropped, batches, writeErrors                             uint64
	buffered                                                                     int64 // a gauge: live recorders only
	auditEvents                                                                  int64 // a gauge: live stores only
}

// metricSource is a cache, store or recorder whose counters are exported.
type metricSource interface{ addTo(t *totals) }

// metricSources are the live metric sources, and the final counts of those
// gone: a reload that replaces a cache must not make a counter go down.
var metricSources = struct {
	sync.Mutex
	live    map[metricSource]struct{}
	retired totals
}{live: map[metricSource]struct{}{}}

func trackMetrics(s metricSource) {
	metricSources.Lock()
	metricSources.live[s] = struct{}{}
	metricSources.Unlock()
}

// retireMetrics keeps the final counts of a source that is closed, in the
// same step as it stops being live.
func retireMetrics(s metricSource) {
	metricSources.Lock()
	defer metricSources.Unlock()
	if _, ok := metricSources.live[s]; !ok {
		return
	}
	delete(metricSources.live, s)
	s.addTo(&metricSources.retired)
	metricSources.retired.buffered = 0
	metricSources.retired.auditEvents = 0
}

func (v *sharedVerifier) addTo(t *totals) {
	s := &v.Stats
	t.hits += s.Hits.Load()
	t.stale += s.StaleHits.Load()
	t.negative += s.NegativeHits.Load()
	t.misses += s.Misses.Load()
	t.queries += s.StoreQueries.Load()
	t.errs += s.StoreErrors.Load()
	t.inval += s.Invalidations.Load()
	t.purges += s.Purges.Load()
	t.busy += s.Busy.Load()
	t.abandoned += s.Abandoned.Load()
}

func (s *sharedStore) addTo(t *totals) {
	t.malformed += s.invalidator.Malformed()
	t.resyncs += s.invalidator.Resyncs()
	t.auditEvents += s.auditEvents.Load()
}

func (r *sharedRecorder) addTo(t *totals) {
	s := &r.Stats
	t.recorded += s.Recorded.Load()
	t.written += s.Written.Load()
	t.dropped += s.Dropped.Load()
	t.batches += s.Batches.Load()
	t.writeErrors += s.WriteErrors.Load()
	t.buffered += r.Buffered()
}

// keygateCollector reports the counters of every cache, store and
// recorder, those closed included.
type keygateCollector struct {
	lookups, queries, errors, invalidations, purges, busy, abandoned, resyncs, malformed *prometheus.Desc
	usageRecorded, usageWritten, usageDropped, usageBuffered, usageBatches, usageErrors  *prometheus.Desc
	auditEvents                                                                          *prometheus.Desc
}

func (c *keygateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lookups, c.queries, c.errors, c.invalidations, c.purges, c.busy, c.abandoned, c.resyncs, c.malformed,
		c.usageRecorded, c.usageWritten, c.usageDropped, c.usageBuffered, c.usageBatches, c.usageErrors, c.auditEvents} {
		ch <- d
	}
}

func (c *keygateCollector) Collect(ch chan<- prometheus.Metric) {
	metricSources.Lock()
	t := metricSources.retired
	for s := range metricSources.live {
		s.addTo(&t)
	}
	metricSources.Unlock()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.lookups, t.hits, "hit")
	counter(c.lookups, t.stale, "stale")
	counter(c.lookups, t.negative, "negative")
	counter(c.lookups, t.misses, "miss")
	counter(c.queries, t.queries)
	counter(c.errors, t.errs)
	counter(c.invalidations, t.inval)
	counter(c.purges, t.purges)
	counter(c.busy, t.busy)
	counter(c.abandoned, t.abandoned)
	counter(c.resyncs, t.resyncs)
	counter(c.malformed, t.malformed)
	counter(c.usageRecorded, t.recorded)
	counter(c.usageWritten, t.written)
	counter(c.usageDropped, t.dropped)
	counter(c.usageBatches, t.batches)
	counter(c.usageErrors, t.writeErrors)
	ch <- prometheus.MustNewConstMetric(c.usageBuffered, prometheus.GaugeValue, float64(t.buffered))
	ch <- prometheus.MustNewConstMetric(c.auditEvents, prometheus.GaugeValue, float64(t.auditEvents))
}
