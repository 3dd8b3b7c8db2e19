package signing_test

import (
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/signing"
)

func TestPick(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	old := &keystore.SigningKey{KID: "old", ActivatedAt: at(0), RetiresAt: at(5).Add(signing.RetireAfter)}
	// Replaced by "now" before its activation at 10: it never signs.
	skipped := &keystore.SigningKey{KID: "skipped", ActivatedAt: at(10), RetiresAt: at(3).Add(signing.RetireAfter)}
	cur := &keystore.SigningKey{KID: "cur", ActivatedAt: at(5)}
	for _, c := range []struct {
		keys []*keystore.SigningKey
		now  time.Time
		want string
	}{
		{[]*keystore.SigningKey{cur}, at(6), "cur"},
		{[]*keystore.SigningKey{cur}, at(4), "cur"}, // nothing else to sign with
		{[]*keystore.SigningKey{cur, old}, at(4), "old"},
		{[]*keystore.SigningKey{cur, old}, at(5), "cur"},
		{[]*keystore.SigningKey{skipped, cur, old}, at(11), "cur"},
		{[]*keystore.SigningKey{skipped, cur, old}, at(4), "old"},
	} {
		if got := signing.Pick(c.keys, c.now).KID; got != c.want {
			t.Errorf("at %s: %s, want %s", c.now.Format("15:04"), got, c.want)
		}
	}
}
