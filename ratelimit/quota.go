package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Period is the span a quota counts over: a calendar day or month in UTC,
// or the key's whole life (uses that never refill).
type Period int8

// Periods.
const (
	Lifetime Period = iota
	Day
	Month
)

func (p Period) String() string {
	switch p {
	case Day:
		return "day"
	case Month:
		return "month"
	}
	return "lifetime"
}

// Start returns the start of the period t is in (UTC); Lifetime starts at
// the Unix epoch.
func (p Period) Start(t time.Time) time.Time {
	t = t.UTC()
	switch p {
	case Day:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	case Month:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Unix(0, 0).UTC()
}

// End returns the end of the period t is in; Lifetime never ends (zero).
func (p Period) End(t time.Time) time.Time {
	switch p {
	case Day:
		return p.Start(t).AddDate(0, 0, 1)
	case Month:
		return p.Start(t).AddDate(0, 1, 0)
	}
	return time.Time{}
}

// Quota is a number of requests per period.
type Quota struct {
	Limit  int64
	Period Period
}

// quotaForms names the accepted forms, for error messages.
const quotaForms = "N/day or N/month with N a positive whole number (e.g. 10000/month)"

// MaxQuota bounds a quota's limit.
const MaxQuota = 1 << 53

// ParseQuota reads "N/day" or "N/month".
func ParseQuota(s string) (Quota, error) {
	n, unit, ok := strings.Cut(s, "/")
	limit, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || limit <= 0 || limit > MaxQuota {
		return Quota{}, fmt.Errorf("quota %q must be %s", s, quotaForms)
	}
	switch unit {
	case "day":
		return Quota{Limit: limit, Period: Day}, nil
	case "month":
		return Quota{Limit: limit, Period: Month}, nil
	}
	return Quota{}, fmt.Errorf("quota %q must be %s", s, quotaForms)
}

// String is q as ParseQuota reads it ("10000/month"); a Lifetime quota is
// its number alone.
func (q Quota) String() string {
	if q.Period == Lifetime {
		return strconv.FormatInt(q.Limit, 10)
	}
	return strconv.FormatInt(q.Limit, 10) + "/" + q.Period.String()
}
