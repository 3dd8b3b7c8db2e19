// Package ratelimit holds Keygate's limiters: the generic cell rate
// algorithm (GCRA) and a table of per-client limiter states whose memory
// stays bounded however many clients there are. It has no Caddy import.
package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limit is a sustained rate with a burst: Burst events may happen at once
// after a quiet period, and after that one every Interval.
type Limit struct {
	// Interval between events at the sustained rate (1s / rate).
	Interval time.Duration
	// Burst is how many events may happen at once. At least 1.
	Burst int
}

// ParseRate reads "N/s", "N/m" or "N/h" (N events per second, minute or
// hour, N a positive whole number) and returns the interval between
// events at that rate.
func ParseRate(s string) (time.Duration, error) {
	count, per, err := parseRate(s)
	if err != nil {
		return 0, err
	}
	return per / time.Duration(count), nil
}

// rateForms names the accepted forms of a rate, for error messages.
const rateForms = "N/s, N/m or N/h with N a positive whole number (e.g. 100/s)"

func parseRate(s string) (count int64, per time.Duration, err error) {
	n, unit, ok := strings.Cut(s, "/")
	count, err = strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || count <= 0 {
		return 0, 0, fmt.Errorf("rate %q must be %s", s, rateForms)
	}
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return 0, 0, fmt.Errorf("rate %q must be %s", s, rateForms)
	}
	if time.Duration(count) > per {
		return 0, 0, fmt.Errorf("rate %q is too high: at most %d per %s", s, int64(per), unit)
	}
	return count, per, nil
}

// FormatRate is the inverse of ParseRate for the intervals it returns,
// choosing the unit that gives a whole number.
func FormatRate(interval time.Duration) string {
	for _, u := range []struct {
		per  time.Duration
		name string
	}{{time.Second, "s"}, {time.Minute, "m"}, {time.Hour, "h"}} {
		if u.per%interval == 0 {
			return strconv.FormatInt(int64(u.per/interval), 10) + "/" + u.name
		}
	}
	return "1/" + interval.String()
}

// MaxBurst bounds a burst: more is no limit at all, and burst × interval
// must stay far from overflowing.
const MaxBurst = 1_000_000

// Validate reports whether l can be used.
func (l Limit) Validate() error {
	if l.Interval <= 0 {
		return errors.New("rate must be positive")
	}
	if l.Burst < 1 || l.Burst > MaxBurst {
		return fmt.Errorf("burst must be 1 to %d", MaxBurst)
	}
	if l.Interval > time.Duration(math.MaxInt64/4)/time.Duration(l.Burst) {
		return fmt.Errorf("burst %d at %s spans more time than a limit can hold; use a shorter rate or a smaller burst", l.Burst, FormatRate(l.Interval))
	}
	return nil
}

// tolerance is how far the theoretical arrival time may run ahead of now.
func (l Limit) tolerance() time.Duration { return time.Duration(l.Burst) * l.Interval }

// State is one client's GCRA state: its theoretical arrival time (TAT),
// in nanoseconds on the caller's clock. The zero value is a client at rest.
type State int64

// Allow reports whether one more event may happen at now and, if so,
// returns the state that records it. If not, wait is how long until it
// would be allowed.
func (l Limit) Allow(s State, now time.Time) (next State, ok bool, wait time.Duration) {
	t := now.UnixNano()
	tat := max(int64(s), t)
	newTAT := tat + int64(l.Interval)
	if over := newTAT - t - int64(l.tolerance()); over > 0 {
		return s, false, time.Duration(over)
	}
	return State(newTAT), true, 0
}

// Idle reports whether s carries no information at now: a client in this
// state is exactly like one never seen, whatever its limit.
func (s State) idle(now time.Time) bool { return int64(s) <= now.UnixNano() }
