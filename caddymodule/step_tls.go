package caddymodule

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// The keys-only-over-TLS step, right after the status check: a working key
// that arrived over plain HTTP from a network not allowed to send it so is
// refused, and logged as exposed (its id, owner and the client), since
// anyone on the path may have read it.

// RequireTLS refuses keys sent over plain HTTP.
type RequireTLS struct {
	// PlainNetworks are the networks (CIDRs) whose peers may send keys
	// over plain HTTP: the address the request came from, not a
	// forwarded one. Default: loopback only (127.0.0.0/8, ::1/128).
	PlainNetworks []string `json:"plain_networks,omitempty"`
}

// defaultPlainNetworks may send keys over plain HTTP when no network is
// listed: traffic that never leaves the machine.
var defaultPlainNetworks = []string{"127.0.0.0/8", "::1/128"}

// exposureLogEvery is how often one key's exposure is logged again.
const exposureLogEvery = 10 * time.Minute

// maxExposureEntries bounds the keys whose last exposure line is
// remembered; past it the memory starts over (a key may be logged again
// sooner, never later).
const maxExposureEntries = 10000

type tlsCheck struct {
	plain   []netip.Prefix
	problem *problem
	exposed *exposureLog
}

// networks parses PlainNetworks.
func (t *RequireTLS) networks() ([]netip.Prefix, error) {
	list := t.PlainNetworks
	if len(list) == 0 {
		list = defaultPlainNetworks
	}
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("require_tls: %q is not a network in CIDR form (10.0.0.0/8, fd00::/8)", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c tlsCheck) check(x exchange) verdict {
	if viaTLS(x.r) {
		return verdict{}
	}
	if peer, err := netip.ParseAddrPort(x.r.RemoteAddr); err == nil {
		a := peer.Addr().Unmap()
		for _, p := range c.plain {
			if p.Contains(a) {
				return verdict{}
			}
		}
	}
	c.exposed.note(x.r, x.key.ID, x.key.Owner, x.now)
	return verdict{problem: c.problem, why: "API key sent over plain HTTP"}
}

// viaTLS reports whether the request reached this server over TLS, or,
// from a trusted proxy (the server's trusted_proxies), says the client
// reached that proxy over TLS.
func viaTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// exposureLog writes one warning per exposed key every exposureLogEvery.
type exposureLog struct {
	logger *zap.Logger
	mu     sync.Mutex
	last   map[string]time.Time
}

func (l *exposureLog) note(r *http.Request, id, owner string, now time.Time) {
	l.mu.Lock()
	if t, ok := l.last[id]; ok && now.Sub(t) < exposureLogEvery {
		l.mu.Unlock()
		return
	}
	if len(l.last) >= maxExposureEntries {
		clear(l.last)
	}
	l.last[id] = now
	l.mu.Unlock()
	client, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	l.logger.Warn("api key sent over plain HTTP: treat it as exposed and rotate it",
		zap.String("key_id", id), zap.String("owner", owner), zap.String("client_ip", client),
		zap.String("remote_addr", r.RemoteAddr))
}
