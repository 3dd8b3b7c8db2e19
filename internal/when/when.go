// Package when reads the times that people type: a duration from now
// ("12h", "30d", "2w") or a time ("2027-01-31T12:00:00Z", "2027-01-31").
// The CLI's flags and the admin API's parameters read them alike.
package when

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Parse reads s as a positive duration, taken forward from now (sign 1)
// or back from it (sign -1), or as a time in RFC 3339 or YYYY-MM-DD (UTC
// midnight). what names the setting in errors.
func Parse(what, s string, now time.Time, sign time.Duration) (time.Time, error) {
	d, err := caddy.ParseDuration(s)
	if n, ok := strings.CutSuffix(s, "w"); ok {
		if w, werr := strconv.Atoi(n); werr == nil {
			d, err = time.Duration(w)*7*24*time.Hour, nil
		}
	}
	if err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%s %s: the duration must be positive", what, s)
		}
		return now.Add(sign * d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q is neither a duration (2w, 30d, 12h) nor a time (2027-01-31T00:00:00Z, 2027-01-31)", what, s)
}
