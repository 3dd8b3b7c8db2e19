package caddymodule

import (
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/ratelimit"
)

// failureBudget counts failed key checks per client. A check that needs
// the store is charged before the store is asked and refunded when the
// key turns out to exist (or the store, not the client, failed): a flood
// of made-up keys thus spends its budget before its lookups can crowd out
// other clients' in the query queue. Budgets outlive a
// config reload (an attacker gains nothing from one) and are shared by the
// handlers with the same limit. A nil *failureBudget is off.
type failureBudget struct {
	table *ratelimit.Table
	key   ratelimit.Limit
}

var failureBudgets = caddy.NewUsagePool() // ratelimit.Limit -> *failureBudget

func (*failureBudget) Destruct() error { return nil }

// failedAuthLimit returns the limit of a configuration; ok is false when
// the budget is off.
func failedAuthLimit(c *FailedAuthLimit) (limit ratelimit.Limit, ok bool, err error) {
	rate, burst := defaultFailedAuthRate, defaultFailedAuthBurst
	if c != nil {
		if c.Off {
			if c.Rate != "" || c.Burst != 0 || c.Delay != nil {
				return limit, false, fmt.Errorf("failed_auth_limit: off takes no rate, burst or delay")
			}
			return limit, false, nil
		}
		if c.Delay != nil && (*c.Delay < 0 || time.Duration(*c.Delay) > maxFailedAuthDelay) {
			return limit, false, fmt.Errorf("failed_auth_limit: delay must be 0 to 1m, got %s", time.Duration(*c.Delay))
		}
		if c.Rate != "" {
			rate = c.Rate
		}
		if c.Burst < 0 {
			return limit, false, fmt.Errorf("failed_auth_limit: burst must be 1 to %d", ratelimit.MaxBurst)
		}
		if c.Burst > 0 {
			burst = c.Burst
		}
	}
	interval, err := ratelimit.ParseRate(rate)
	if err != nil {
		return limit, false, fmt.Errorf("failed_auth_limit: %v", err)
	}
	limit = ratelimit.Limit{Interval: interval, Burst: burst}
	if err := limit.Validate(); err != nil {
		return limit, false, fmt.Errorf("failed_auth_limit: %v", err)
	}
	return limit, true, nil
}

// failedAuthDelay is how long answers to a client out of budget are held
// (see FailedAuthLimit.Delay), for a configuration failedAuthLimit accepted.
// With auth_server the default is 0: a held answer there holds a request
// of the proxy in front, whose own limits a flood would then exhaust.
func failedAuthDelay(c *FailedAuthLimit, authServer bool) time.Duration {
	if c == nil || c.Delay == nil {
		if authServer {
			return 0
		}
		return defaultFailedAuthDelay
	}
	return time.Duration(*c.Delay)
}

func acquireFailureBudget(c *FailedAuthLimit) (*failureBudget, error) {
	limit, ok, err := failedAuthLimit(c)
	if err != nil || !ok {
		return nil, err
	}
	val, _, err := failureBudgets.LoadOrNew(limit, func() (caddy.Destructor, error) {
		return &failureBudget{table: ratelimit.NewTable(limit, failedAuthClients), key: limit}, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*failureBudget), nil
}

func releaseFailureBudget(b *failureBudget) { failureBudgets.Delete(b.key) }

// invalid refuses a request whose key failed its check (malformed,
// unknown, revoked, ambiguous) and charges it to the client's budget
// unless its store lookup was charged already: 401 while the budget
// lasts, 429 once it is spent.
func (h *Handler) invalid(w http.ResponseWriter, r *http.Request, charged bool, keyID string) error {
	if !charged && h.failures != nil {
		h.noteProxy(r)
		if wait, over := h.failures.spend(r, h.clock.Now()); over {
			return h.overBudget(w, r, wait, keyID)
		}
	}
	return h.reject(w, r, h.problems.invalid, keyID)
}

// overBudget answers a client out of its budget of failed checks: 429,
// held for failedDelay first (see holdAnswer). Retry-After counts from
// the answer: the time held is taken off the budget's wait.
func (h *Handler) overBudget(w http.ResponseWriter, r *http.Request, wait time.Duration, keyID string) error {
	wait = max(0, wait-h.holdAnswer(r))
	return h.rejectRetry(w, r, h.problems.tooManyFailures, wait, keyID)
}

// answerHolds counts the answers held, in all and per client (keyed as
// the budget is), so that both stay under their caps. A held answer keeps
// its request's goroutine and buffers: about 30 KiB for an HTTP/2
// stream, which has a goroutine of its own, less for an HTTP/1.1
// connection, whose goroutine exists anyway. The caps keep that under
// about 250 MiB, and one client cannot fill more than a quarter of them.
type answerHolds struct {
	limit     int64 // in all
	perClient int   // per client
	total     atomic.Int64
	shards    [64]holdShard
}

type holdShard struct {
	mu      sync.Mutex
	clients map[netip.Addr]int
}

func newAnswerHolds(limit int64, perClient int) *answerHolds {
	a := &answerHolds{limit: limit, perClient: perClient}
	for i := range a.shards {
		a.shards[i].clients = map[netip.Addr]int{}
	}
	return a
}

// holds are the process's held answers: 8,192 at most, 2,048 per client.
var holds = newAnswerHolds(8192, 2048)

func (a *answerHolds) shard(c netip.Addr) *holdShard {
	b := c.As16()
	return &a.shards[(b[15]^b[14]^b[7])%uint8(len(a.shards))]
}

// enter takes a place for client c; false when none is left.
func (a *answerHolds) enter(c netip.Addr) bool {
	if a.total.Add(1) > a.limit {
		a.total.Add(-1)
		return false
	}
	sh := a.shard(c)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.clients[c] >= a.perClient {
		a.total.Add(-1)
		return false
	}
	sh.clients[c]++
	return true
}

// exit gives back a place taken with enter.
func (a *answerHolds) exit(c netip.Addr) {
	sh := a.shard(c)
	sh.mu.Lock()
	if sh.clients[c]--; sh.clients[c] <= 0 {
		delete(sh.clients, c)
	}
	sh.mu.Unlock()
	a.total.Add(-1)
}

// onServerShutdown registers f to run when srv begins to shut down
// (Caddy hands it to its http.Server); a variable so that a test can run
// what was registered.
var onServerShutdown = func(srv *caddyhttp.Server, f func()) { srv.RegisterOnShutdown(f) }

// holdAnswer waits failedDelay (at most half the server's write timeout,
// see Provision), or less: until the client goes away, the server begins
// to shut down (an exit or a reload) or the handler's config is unloaded.
// No answer is held when as many as allowed are held already, in all or
// for the client. It returns how long it held.
func (h *Handler) holdAnswer(r *http.Request) time.Duration {
	d := h.failedDelay
	if d <= 0 {
		return 0
	}
	a, ok := clientAddr(r)
	if !ok {
		return 0
	}
	client, places := ratelimit.ClientKey(a), holds
	if !places.enter(client) {
		countHeld("full")
		return 0
	}
	defer places.exit(client)
	countHeld("held")
	start := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done(): // the client went away
	case <-h.shutdown:
	case <-h.done:
	}
	return time.Since(start)
}

// clientAddr is the address a request's budget is kept under: Caddy's
// client IP, which honours trusted_proxies, so that a client cannot pick
// its own address with X-Forwarded-For unless it is a trusted proxy.
func clientAddr(r *http.Request) (netip.Addr, bool) {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return netip.Addr{}, false
		}
		return ap.Addr(), true
	}
	a, err := netip.ParseAddr(ip)
	return a, err == nil
}

// spend charges one failed check to the request's client; over is true
// when none was left.
func (b *failureBudget) spend(r *http.Request, now time.Time) (wait time.Duration, over bool) {
	if b == nil {
		return 0, false
	}
	a, ok := clientAddr(r)
	if !ok {
		return 0, false
	}
	allowed, wait := b.table.Spend(a, now)
	return wait, !allowed
}

// refund gives back the unit a store lookup was charged, for a key that
// turned out to exist or a lookup the store could not answer.
func (b *failureBudget) refund(r *http.Request) {
	if b == nil {
		return
	}
	if a, ok := clientAddr(r); ok {
		b.table.Refund(a)
	}
}

// pendingLookups caps the store lookups each client has in flight at
// once, so that one client cannot fill the query queue that every client
// shares, however fast it sends: a client's further lookups wait for its
// own earlier ones, not in the shared queue. Entries exist only while a
// client has lookups in flight or waiting, so memory follows the open
// requests, not the number of clients ever seen.
type pendingLookups struct {
	limit  int
	shards [64]pendingShard
}

type pendingShard struct {
	mu      sync.Mutex
	clients map[netip.Addr]*clientSlots
}

type clientSlots struct {
	slots chan struct{}
	refs  int // requests holding or waiting for a slot; guarded by the shard
}

// newPendingLookups allows each client a quarter of the query slots (at
// least one) at a time. A nil *pendingLookups allows everything.
func newPendingLookups(maxQueries int) *pendingLookups {
	p := &pendingLookups{limit: max(1, maxQueries/4)}
	for i := range p.shards {
		p.shards[i].clients = map[netip.Addr]*clientSlots{}
	}
	return p
}

func (p *pendingLookups) shard(a netip.Addr) *pendingShard {
	b := a.As16()
	return &p.shards[(b[15]^b[14]^b[7])%uint8(len(p.shards))]
}

// admission is what enter decided.
type admission int

const (
	admitted admission = iota // the client may start a lookup; call exit after it
	refused                   // the client's earlier lookups did not finish in time
	joinable                  // meanwhile a lookup of the same key started: wait for that one
)

// enter waits, for up to wait, until the request's client may start one
// more lookup, or until joinable reports that the lookup it wants is in
// flight anyway (polled while waiting). On admitted the caller must call
// exit with the returned address.
func (p *pendingLookups) enter(r *http.Request, wait time.Duration, inFlight func() bool) (netip.Addr, admission) {
	if p == nil {
		return netip.Addr{}, admitted
	}
	a, ok := clientAddr(r)
	if !ok {
		return netip.Addr{}, admitted
	}
	a = ratelimit.ClientKey(a)
	sh := p.shard(a)
	sh.mu.Lock()
	c := sh.clients[a]
	if c == nil {
		c = &clientSlots{slots: make(chan struct{}, p.limit)}
		sh.clients[a] = c
	}
	c.refs++
	sh.mu.Unlock()
	select {
	case c.slots <- struct{}{}:
		return a, admitted
	default:
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	result := refused
wait:
	for {
		select {
		case c.slots <- struct{}{}:
			return a, admitted
		case <-poll.C:
			if inFlight() {
				result = joinable
				break wait
			}
		case <-timer.C:
			break wait
		case <-r.Context().Done():
			break wait
		}
	}
	p.release(sh, a, c)
	return netip.Addr{}, result
}

// exit ends a lookup started with enter.
func (p *pendingLookups) exit(a netip.Addr) {
	if p == nil || !a.IsValid() {
		return
	}
	sh := p.shard(a)
	sh.mu.Lock()
	c := sh.clients[a]
	sh.mu.Unlock()
	<-c.slots
	p.release(sh, a, c)
}

func (p *pendingLookups) release(sh *pendingShard, a netip.Addr, c *clientSlots) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c.refs--; c.refs == 0 {
		delete(sh.clients, a)
	}
}

// noteProxy warns, once per handler, when a request charged to the
// budget came through a trusted proxy of a server without
// trusted_proxies_strict: Caddy then takes the client IP from the leftmost
// X-Forwarded-For entry, which the client itself writes, so a client could
// give itself a fresh budget with every request. (Caddy's provisioning
// does not show which proxies a server trusts; a request does.)
func (h *Handler) noteProxy(r *http.Request) {
	if h.proxyNoted.Load() {
		return
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return
	}
	if !h.proxyNoted.CompareAndSwap(false, true) {
		return
	}
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.TrustedProxiesStrict == 0 {
		h.logger.Warn("trusted_proxies without trusted_proxies_strict: the client IP comes from the leftmost " +
			"X-Forwarded-For entry, which a client can choose, so it can escape its budget of failed key checks " +
			"(failed_auth_limit); add trusted_proxies_strict to the servers global option")
	}
}
