package keystore

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// MaxCIDRs bounds a key's allowlist.
const MaxCIDRs = 64

// ParseCIDRs reads comma-separated networks ("203.0.113.0/24,
// 2001:db8::/32"; an address alone is a single host), as the CLI takes
// them and the backends store them; "" is none.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is neither a network (203.0.113.0/24, 2001:db8::/32) nor an address", part)
			}
			a = a.Unmap()
			part = netip.PrefixFrom(a, a.BitLen()).String()
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network like 203.0.113.0/24 or 2001:db8::/32", part)
		}
		out = append(out, p)
	}
	if len(out) > MaxCIDRs {
		return nil, fmt.Errorf("too many networks: %d (at most %d)", len(out), MaxCIDRs)
	}
	return normalizeCIDRs(out), nil
}

// CIDRText is what ParseCIDRs reads.
func CIDRText(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// normalizeCIDRs masks each network to its prefix (IPv4-mapped IPv6 as
// IPv4), sorts them and removes duplicates; nil for none.
func normalizeCIDRs(ps []netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		a := p.Addr()
		bits := p.Bits()
		if a.Is4In6() {
			a, bits = a.Unmap(), max(0, bits-96)
		}
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// AllowsFrom reports whether the key may be used from a: always when it
// has no allowlist. IPv4-mapped IPv6 addresses match as IPv4.
func (k *Key) AllowsFrom(a netip.Addr) bool {
	if len(k.AllowCIDRs) == 0 {
		return true
	}
	a = a.Unmap().WithZone("")
	for _, p := range k.AllowCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
