package caddymodule

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

// addLimitFlags adds the flags of a key's own limits.
func addLimitFlags(c *cobra.Command) {
	c.Flags().String("rate", "", "The key's own rate limit: N/s, N/m or N/h (instead of the route's rate_limit)")
	c.Flags().Int("burst", 0, "Requests the key may send at once with --rate (default: N)")
	c.Flags().String("quota", "", "Requests per calendar day or month in UTC: N/day or N/month, shared by every gateway")
	c.Flags().Int64("uses", 0, "Accepted requests after which the key is refused (uses_exhausted)")
	c.Flags().String("refill", "", "Restore --uses at the start of each 'day' or 'month' (UTC)")
}

// limitFlags reads the flags addLimitFlags added; nil when none is set.
func limitFlags(cmd *cobra.Command) (*keystore.Limits, error) {
	f := cmd.Flags()
	var l keystore.Limits
	l.Rate, _ = f.GetString("rate")
	l.Burst, _ = f.GetInt("burst")
	l.Quota, _ = f.GetString("quota")
	l.Uses, _ = f.GetInt64("uses")
	l.Refill, _ = f.GetString("refill")
	for _, name := range []string{"rate", "quota", "refill"} {
		if v, _ := f.GetString(name); f.Changed(name) && strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("--%s needs a value", name)
		}
	}
	if f.Changed("burst") && l.Burst <= 0 {
		return nil, fmt.Errorf("--burst must be a positive whole number")
	}
	if f.Changed("uses") && l.Uses <= 0 {
		return nil, fmt.Errorf("--uses must be a positive whole number")
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("%s", flagError(err))
	}
	if l.IsZero() {
		return nil, nil
	}
	return &l, nil
}

// flagError names the flag in a limits error.
func flagError(err error) string {
	msg := err.Error()
	for _, p := range []struct{ in, flag string }{
		{"rate ", "--rate"}, {"burst", "--burst"}, {"a burst", "--burst"}, {"quota", "--quota"},
		{"uses", "--uses"}, {"refill", "--refill"}, {"a refill", "--refill"},
	} {
		if strings.HasPrefix(msg, p.in) {
			return p.flag + ": " + msg
		}
	}
	return msg
}

// describeLimits is l for people: "rate 100/s burst 200, quota
// 10000/month, uses 1000 refilled each day".
func describeLimits(l *keystore.Limits) string {
	if l.IsZero() {
		return ""
	}
	var parts []string
	if l.Rate != "" {
		r := "rate " + l.Rate
		if l.Burst != 0 {
			r += fmt.Sprintf(" burst %d", l.Burst)
		}
		parts = append(parts, r)
	}
	if l.Quota != "" {
		parts = append(parts, "quota "+l.Quota)
	}
	if l.Uses != 0 {
		u := fmt.Sprintf("uses %d", l.Uses)
		if l.Refill != "" {
			u += " refilled each " + l.Refill
		}
		parts = append(parts, u)
	}
	return strings.Join(parts, ", ")
}
