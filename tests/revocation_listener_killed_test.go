package tests

import (
	"fmt"
	"testing"
	"time"
)

// TestRevocationWithListenersKilledRepeatedly: ten revocations, each with
// both gateways' listening connections killed just before it, so that the
// notification is lost every time. Each gateway must notice, reconnect,
// resync and refuse the key within 1s, every time: a watch that is cut
// again and again must not back off further and further. Purges are
// budgeted (a few at once, then one a second), so resyncs asked for in
// quick succession may share a purge; each is still counted, and each
// revocation is still refused in time.
func TestRevocationWithListenersKilledRepeatedly(t *testing.T) {
	t.Parallel()
	f := newRevocationFixture(t, 2)
	const n = 10
	f.freshListeners(t)
	waitListeners(t, f.db, len(f.gws), 15*time.Second)
	before := f.counters(t, resyncsMetric)
	var killed []time.Duration
	for i := range n {
		killed = append(killed, f.revokeAndTime(t, fmt.Sprintf("revoked %d", i), true))
	}
	t.Logf("revocation refused by both gateways, listeners killed just before: %s (in order: %v)", distribution(killed), roundAll(killed))
	waitListeners(t, f.db, len(f.gws), 15*time.Second)
	f.wantRise(t, resyncsMetric, before, n, "one resync per listener reconnection")
}
