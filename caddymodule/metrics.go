package caddymodule

import (
	"errors"

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

	cacheCollector = &verifierCollector{
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
	}
)

// The result label values of requestsTotal, created up front so that
// every series exists from the start.
var requestResults = []string{"ok", CodeMissingKey, CodeInvalidKey, CodeExpiredKey, CodeInsufficientScope,
	CodeStoreUnavailable, CodeTooManyFailures, CodeTooManyPending, CodeCrossOrigin}

// requestCounters avoids a label lookup per request.
var requestCounters = map[string]prometheus.Counter{}

func init() {
	for _, r := range requestResults {
		requestCounters[r] = requestsTotal.WithLabelValues(r)
	}
}

func countRequest(result string) { requestCounters[result].Inc() }

func registerMetrics(ctx caddy.Context) {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{requestsTotal, cacheCollector} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				ctx.Logger().Warn("registering api_key metrics", zap.Error(err))
			}
		}
	}
}

// verifierCollector reports the counters of every live cache, summed.
type verifierCollector struct {
	lookups, queries, errors, invalidations, purges, busy, abandoned, resyncs, malformed *prometheus.Desc
}

func (c *verifierCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lookups
	ch <- c.queries
	ch <- c.errors
	ch <- c.invalidations
	ch <- c.purges
	ch <- c.busy
	ch <- c.abandoned
	ch <- c.resyncs
	ch <- c.malformed
}

func (c *verifierCollector) Collect(ch chan<- prometheus.Metric) {
	var hits, stale, negative, misses, queries, errs, inval, purges, busy, abandoned, resyncs, malformed uint64
	verifiers.Range(func(_, val any) bool {
		s := &val.(*sharedVerifier).Stats
		hits += s.Hits.Load()
		stale += s.StaleHits.Load()
		negative += s.NegativeHits.Load()
		misses += s.Misses.Load()
		queries += s.StoreQueries.Load()
		errs += s.StoreErrors.Load()
		inval += s.Invalidations.Load()
		purges += s.Purges.Load()
		busy += s.Busy.Load()
		abandoned += s.Abandoned.Load()
		return true
	})
	stores.Range(func(_, val any) bool {
		malformed += val.(*sharedStore).invalidator.Malformed()
		resyncs += val.(*sharedStore).invalidator.Resyncs()
		return true
	})
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.lookups, hits, "hit")
	counter(c.lookups, stale, "stale")
	counter(c.lookups, negative, "negative")
	counter(c.lookups, misses, "miss")
	counter(c.queries, queries)
	counter(c.errors, errs)
	counter(c.invalidations, inval)
	counter(c.purges, purges)
	counter(c.busy, busy)
	counter(c.abandoned, abandoned)
	counter(c.resyncs, resyncs)
	counter(c.malformed, malformed)
}
