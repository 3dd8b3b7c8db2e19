package caddymodule

// The IP allowlist step, after status and scopes and before the limits: a
// key with an allowlist works only from the networks on it. The address
// is Caddy's client IP, which honours the server's trusted_proxies: an
// X-Forwarded-For from a peer that is not a trusted proxy is ignored, so
// it cannot get a key past its allowlist.
type ipCheck struct{ problem *problem }

func (c ipCheck) check(x exchange) verdict {
	if len(x.key.AllowCIDRs) == 0 {
		return verdict{}
	}
	if a, ok := clientAddr(x.r); ok && x.key.AllowsFrom(a) {
		return verdict{}
	}
	return verdict{problem: c.problem, why: "API key used from an address outside its allowlist"}
}
