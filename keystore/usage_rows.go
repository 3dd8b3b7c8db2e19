package keystore

import (
	"cmp"
	"slices"
	"time"
)

// MergedRows returns b's rows with one row per key and minute (counts of
// duplicates added together), sorted by key and minute. Writers that lock
// rows in the same order cannot deadlock each other, and PostgreSQL's
// upsert may touch each row once per statement.
func (b *UsageBatch) MergedRows() []UsageRow {
	out := slices.Clone(b.Rows)
	for i := range out {
		out[i].Minute = out[i].Minute.UTC().Truncate(time.Minute)
	}
	slices.SortFunc(out, func(x, y UsageRow) int {
		return cmp.Or(cmp.Compare(x.KeyID, y.KeyID), x.Minute.Compare(y.Minute))
	})
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && merged[n-1].KeyID == r.KeyID && merged[n-1].Minute.Equal(r.Minute) {
			merged[n-1].UsageCounts.Add(&r.UsageCounts)
			merged[n-1].Owner = r.Owner
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// SortedLastUsed returns b's last uses in key order, to the microsecond.
func (b *UsageBatch) SortedLastUsed() (ids []string, at []time.Time) {
	m := b.LastUsed
	ids = make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	at = make([]time.Time, len(ids))
	for i, id := range ids {
		at[i] = m[id].UTC().Truncate(time.Microsecond)
	}
	return ids, at
}

// BucketSeconds is the length of q's buckets.
func (q UsageQuery) BucketSeconds() int64 {
	switch q.By {
	case ByMinute:
		return 60
	case ByHour:
		return 3600
	default:
		return 86400
	}
}
