package keystore

import (
	"cmp"
	"slices"
	"time"
)

// mergeRows returns rows with one row per key and minute (counts of
// duplicates added together), sorted by key and minute. Writers that lock
// rows in the same order cannot deadlock each other, and PostgreSQL's
// upsert may touch each row once per statement.
func mergeRows(rows []UsageRow) []UsageRow {
	out := slices.Clone(rows)
	for i := range out {
		out[i].Minute = out[i].Minute.UTC().Truncate(time.Minute)
	}
	slices.SortFunc(out, func(a, b UsageRow) int {
		return cmp.Or(cmp.Compare(a.KeyID, b.KeyID), a.Minute.Compare(b.Minute))
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

// sortedLastUsed returns a batch's last uses in key order.
func sortedLastUsed(m map[string]time.Time) (ids []string, at []time.Time) {
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

// bucketSeconds is the length of a usage bucket.
func bucketSeconds(by string) int64 {
	switch by {
	case ByMinute:
		return 60
	case ByHour:
		return 3600
	default:
		return 86400
	}
}
