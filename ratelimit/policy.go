package ratelimit

import (
	"fmt"
	"strconv"
	"time"
)

// Policy is a rate limit as an operator writes it: Count events per
// second, minute or hour, with a burst. It is what RateLimit-Policy
// headers describe; Limit is what the limiter runs.
type Policy struct {
	Count int64         // events per Per
	Per   time.Duration // time.Second, time.Minute or time.Hour
	// Burst is how many events may happen at once after a quiet period.
	// Zero means Count: "100/m" lets 100 requests through at once, then
	// one every 600ms.
	Burst int
}

// ParsePolicy reads a rate ("100/s", "100/m", "100/h") and a burst (0 for
// the default) and checks that they make a usable limit.
func ParsePolicy(rate string, burst int) (Policy, error) {
	count, per, err := parseRate(rate)
	if err != nil {
		return Policy{}, err
	}
	p := Policy{Count: count, Per: per, Burst: burst}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Validate reports whether p can be used.
func (p Policy) Validate() error {
	if p.Count <= 0 || (p.Per != time.Second && p.Per != time.Minute && p.Per != time.Hour) || time.Duration(p.Count) > p.Per {
		return fmt.Errorf("rate must be %s", rateForms)
	}
	if p.Burst < 0 || p.Burst > MaxBurst {
		return fmt.Errorf("burst must be 1 to %d", MaxBurst)
	}
	if p.Burst == 0 && p.Count > MaxBurst {
		return fmt.Errorf("rate %s needs a burst of at most %d", p.Rate(), MaxBurst)
	}
	return p.Limit().Validate()
}

// IsZero reports whether p is no policy at all.
func (p Policy) IsZero() bool { return p.Count == 0 }

// Limit is the GCRA limit that enforces p.
func (p Policy) Limit() Limit {
	burst := p.Burst
	if burst == 0 {
		burst = int(p.Count)
	}
	return Limit{Interval: p.Per / time.Duration(p.Count), Burst: burst}
}

// Rate is p's rate as written: "100/s".
func (p Policy) Rate() string {
	unit := "s"
	switch p.Per {
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return strconv.FormatInt(p.Count, 10) + "/" + unit
}

// String is p as the Caddyfile and the CLI write it: "100/s burst 200".
func (p Policy) String() string {
	if p.Burst == 0 {
		return p.Rate()
	}
	return p.Rate() + " burst " + strconv.Itoa(p.Burst)
}

// Window is the window of p's RateLimit-Policy header, in seconds.
func (p Policy) Window() int64 { return int64(p.Per / time.Second) }
