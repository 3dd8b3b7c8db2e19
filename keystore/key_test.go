package keystore

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestKeyParamsValidate(t *testing.T) {
	now := time.Now()
	long := strings.Repeat("x", 300)
	// Every case breaks one rule, and the error must name that rule: a
	// case that failed for another reason would not guard its own.
	var manyScopes []string
	for i := range MaxScopes + 1 {
		manyScopes = append(manyScopes, fmt.Sprintf("s%d", i))
	}
	manyMeta := map[string]string{}
	for i := range MaxMetadata + 1 {
		manyMeta[fmt.Sprintf("k%d", i)] = "v"
	}
	bad := map[string]struct {
		p    NewKeyParams
		want string
	}{
		"no name":            {NewKeyParams{}, "name is required"},
		"blank name":         {NewKeyParams{Name: "  "}, "name is required"},
		"long name":          {NewKeyParams{Name: long}, "name is too long"},
		"control in name":    {NewKeyParams{Name: "a\nb"}, "control character"},
		"bad utf8":           {NewKeyParams{Name: "a\xffb"}, "not valid UTF-8"},
		"long owner":         {NewKeyParams{Name: "a", Owner: long}, "owner is too long"},
		"bad scope":          {NewKeyParams{Name: "a", Scopes: []string{"read orders"}}, "may contain only"},
		"empty scope":        {NewKeyParams{Name: "a", Scopes: []string{""}}, "must be 1 to 64 characters"},
		"long scope":         {NewKeyParams{Name: "a", Scopes: []string{strings.Repeat("s", MaxScopeLen+1)}}, "must be 1 to 64 characters"},
		"too many scopes":    {NewKeyParams{Name: "a", Scopes: manyScopes}, "too many scopes: 65"},
		"bad meta key":       {NewKeyParams{Name: "a", Metadata: map[string]string{"a b": "c"}}, "may contain only"},
		"long meta key":      {NewKeyParams{Name: "a", Metadata: map[string]string{strings.Repeat("k", MaxMetadataKey+1): "v"}}, "must be 1 to 64 characters"},
		"bad meta value":     {NewKeyParams{Name: "a", Metadata: map[string]string{"a": "\x00"}}, "control character"},
		"long meta value":    {NewKeyParams{Name: "a", Metadata: map[string]string{"a": strings.Repeat("v", MaxMetadataValue+1)}}, "is too long"},
		"too many meta keys": {NewKeyParams{Name: "a", Metadata: manyMeta}, "too many metadata entries: 33"},
		"past expiry":        {NewKeyParams{Name: "a", ExpiresAt: now.Add(-time.Second)}, "not in the future"},
	}
	for name, c := range bad {
		err := c.p.Validate(now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate = %v, want an error containing %q", name, err, c.want)
		}
	}
	// At the limits exactly, everything is accepted.
	edge := NewKeyParams{Name: "edge", Scopes: manyScopes[:MaxScopes], Metadata: map[string]string{}}
	for k := range manyMeta {
		if len(edge.Metadata) < MaxMetadata {
			edge.Metadata[k] = strings.Repeat("v", MaxMetadataValue)
		}
	}
	if err := edge.Validate(now); err != nil {
		t.Fatalf("params at the limits refused: %v", err)
	}
	ok := NewKeyParams{Name: "ok", Owner: "Ünïcode owner", Scopes: []string{"b", "a:x", "b"}, Metadata: map[string]string{"k.1": "v"}}
	if err := ok.Validate(now); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ok.Scopes, []string{"a:x", "b"}) {
		t.Fatalf("scopes not normalised: %v", ok.Scopes)
	}
}

// TestKeyStatusRevocationWinsOverExpiry: a key both revoked and expired
// is revoked, so that it answers like an unknown key and does not tell a
// client that it once existed.
func TestKeyStatusRevocationWinsOverExpiry(t *testing.T) {
	now := time.Unix(2_000_000_000, 0)
	for _, c := range []struct {
		k    Key
		want string
	}{
		{Key{}, StatusActive},
		{Key{ExpiresAt: now.Add(time.Second)}, StatusActive},
		{Key{ExpiresAt: now}, StatusExpired},
		{Key{RevokedAt: now.Add(-time.Hour)}, StatusRevoked},
		{Key{RevokedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)}, StatusRevoked},
		{Key{RevokedAt: now.Add(-time.Minute), ExpiresAt: now.Add(-time.Hour)}, StatusRevoked},
	} {
		if got := c.k.Status(now); got != c.want {
			t.Errorf("Status of %+v = %s, want %s", c.k, got, c.want)
		}
	}
}

func TestScopeWildcards(t *testing.T) {
	k := &Key{Scopes: []string{"billing:read", "orders:*"}}
	for scope, want := range map[string]bool{
		"orders:read":          true,
		"orders:refunds:write": true,
		"orders:*":             true,
		"orders":               false,
		"orders:":              false,
		"ordersx:read":         false,
		"billing:read":         true,
		"billing:write":        false,
		"billing":              false,
	} {
		if got := k.HasScopes([]string{scope}); got != want {
			t.Errorf("orders:* and billing:read grant %q: %v, want %v", scope, got, want)
		}
	}
	all := &Key{Scopes: []string{"*"}}
	if !all.HasScopes([]string{"anything", "orders:refunds:write"}) {
		t.Error("* does not grant everything")
	}
	if (&Key{}).HasScopes([]string{"read"}) || !(&Key{}).HasScopes(nil) {
		t.Error("a key without scopes")
	}
	for _, ok := range []string{"*", "orders:*", "a:b:*", "read"} {
		if err := ValidateScope(ok); err != nil {
			t.Errorf("ValidateScope(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"a*", "*:read", "orders:*:read", "**", "orders:re*", "/*"} {
		if err := ValidateScope(bad); err == nil || !strings.Contains(err.Error(), "whole last segment") {
			t.Errorf("ValidateScope(%q) = %v, want the wildcard rule", bad, err)
		}
	}
}

func TestKeyStatusNotBefore(t *testing.T) {
	at := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	k := &Key{NotBefore: at, ExpiresAt: at.Add(time.Hour)}
	for _, c := range []struct {
		now  time.Time
		want string
	}{
		{at.Add(-time.Nanosecond), StatusNotYetValid},
		{at, StatusActive},
		{at.Add(time.Hour), StatusExpired},
	} {
		if got := k.Status(c.now); got != c.want {
			t.Errorf("Status(%v) = %s, want %s", c.now, got, c.want)
		}
	}
	k.RevokedAt = at.Add(-time.Hour)
	if got := k.Status(at.Add(-time.Minute)); got != StatusRevoked {
		t.Errorf("a revoked key not valid yet: %s, want revoked", got)
	}
	p := NewKeyParams{Name: "x", NotBefore: at.Add(time.Hour), ExpiresAt: at}
	if err := p.Validate(at.Add(-24 * time.Hour)); err == nil || !strings.Contains(err.Error(), "is not before the expiry") {
		t.Errorf("not-before after expiry: %v", err)
	}
}

func TestCIDRs(t *testing.T) {
	got, err := ParseCIDRs(" 2001:db8::/32, 203.0.113.7/24,198.51.100.1 , 203.0.113.0/24, ::ffff:192.0.2.0/120")
	if err != nil {
		t.Fatal(err)
	}
	if s := CIDRText(got); s != "192.0.2.0/24,198.51.100.1/32,203.0.113.0/24,2001:db8::/32" {
		t.Fatalf("normalised to %s", s)
	}
	k := &Key{AllowCIDRs: got}
	for addr, want := range map[string]bool{
		"203.0.113.200":        true,
		"::ffff:203.0.113.200": true, // IPv4-mapped matches as IPv4
		"198.51.100.1":         true,
		"198.51.100.2":         false,
		"2001:db8:ffff::1":     true,
		"2001:db9::1":          false,
		"192.0.2.9":            true,
	} {
		if k.AllowsFrom(netip.MustParseAddr(addr)) != want {
			t.Errorf("AllowsFrom(%s) = %v, want %v", addr, !want, want)
		}
	}
	if !(&Key{}).AllowsFrom(netip.MustParseAddr("192.0.2.1")) {
		t.Error("a key without an allowlist is refused")
	}
	for _, bad := range []string{"203.0.113.0/33", "example.com", "203.0.113.0/24,", "fe80::1%eth0", "10.0.0.0/8/1"} {
		if _, err := ParseCIDRs(bad); err == nil {
			t.Errorf("ParseCIDRs(%q) accepted", bad)
		}
	}
	if l, err := ParseCIDRs(""); err != nil || l != nil {
		t.Errorf("empty: %v %v", l, err)
	}
}
