package audit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// chain seals n events as a store would.
func chain(n int) []*Event {
	var out []*Event
	var seq int64
	var prev []byte
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)
	for i := 0; i < n; i++ {
		e := &Event{Time: t0.Add(time.Duration(i) * time.Minute), Actor: "cli:alice", Action: ActionCreate,
			KeyID: fmt.Sprintf("K%011d", i), Owner: "acme", After: fmt.Sprintf(`{"id":"K%011d"}`, i)}
		Seal(e, seq, prev)
		seq, prev = e.Seq, e.Hash
		out = append(out, e)
	}
	return out
}

func verify(events []*Event, want *Head) (Head, error) {
	c := NewChain(want)
	for _, e := range events {
		if err := c.Add(e); err != nil {
			return Head{}, err
		}
	}
	return c.Finish()
}

func brokenAt(t *testing.T, err error, seq int64, reason string) {
	t.Helper()
	var b *BrokenError
	if !errors.As(err, &b) {
		t.Fatalf("got %v, want a BrokenError at %d", err, seq)
	}
	if b.Seq != seq || !strings.Contains(b.Reason, reason) {
		t.Fatalf("got %q, want event %d and %q", err, seq, reason)
	}
}

func TestSealedChainVerifies(t *testing.T) {
	events := chain(5)
	if events[0].Seq != 1 || !bytes.Equal(events[0].Prev, Genesis) {
		t.Fatalf("first event: seq %d, prev %x", events[0].Seq, events[0].Prev)
	}
	if events[0].Time.Nanosecond()%1000 != 0 {
		t.Fatalf("time kept below microseconds: %v", events[0].Time)
	}
	head, err := verify(events, nil)
	if err != nil || head.Seq != 5 || !bytes.Equal(head.Hash, events[4].Hash) {
		t.Fatalf("verify: %v, head %v", err, head)
	}
	// The head recorded at any point verifies.
	for _, e := range events {
		want := Head{e.Seq, e.Hash}
		if _, err := verify(events, &want); err != nil {
			t.Fatalf("with head %v: %v", want, err)
		}
	}
	if head, err := verify(nil, nil); err != nil || head.Seq != 0 || head.Hash != nil {
		t.Fatalf("empty chain: %v %v", head, err)
	}
}

// Every field is covered by the hash: changing any one breaks the event.
func TestEditedEventIsNamed(t *testing.T) {
	edits := map[string]func(e *Event){
		"time":    func(e *Event) { e.Time = e.Time.Add(time.Microsecond) },
		"actor":   func(e *Event) { e.Actor = "cli:mallory" },
		"action":  func(e *Event) { e.Action = ActionRevoke },
		"key id":  func(e *Event) { e.KeyID = "XXXXXXXXXXXX" },
		"owner":   func(e *Event) { e.Owner = "globex" },
		"before":  func(e *Event) { e.Before = "{}" },
		"after":   func(e *Event) { e.After = e.After + " " },
		"seq":     func(e *Event) { e.Seq = 9 },
		"hash":    func(e *Event) { e.Hash[0] ^= 1 },
		"prev":    func(e *Event) { e.Prev[0] ^= 1 },
		"rehash":  func(e *Event) { e.Actor = "cli:mallory"; e.Hash = Hash(e) },
		"relinks": func(e *Event) { e.Prev = Genesis; e.Hash = Hash(e) },
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			events := chain(5)
			edit(events[2])
			_, err := verify(events, nil)
			switch name {
			case "seq":
				brokenAt(t, err, 3, "missing")
			case "rehash":
				// Rehashed in place: the next event no longer links to it.
				brokenAt(t, err, 4, "does not link")
			case "prev", "relinks":
				brokenAt(t, err, 3, "does not link")
			default:
				brokenAt(t, err, 3, "altered")
			}
		})
	}
}

func TestRemovedAndReorderedEventsAreNamed(t *testing.T) {
	events := chain(6)
	middle := append(append([]*Event{}, events[:2]...), events[3:]...)
	_, err := verify(middle, nil)
	brokenAt(t, err, 3, "missing")

	first := events[1:]
	_, err = verify(first, nil)
	brokenAt(t, err, 1, "missing")

	// Two events swapped, renumbered to hide it.
	swapped := chain(6)
	swapped[2], swapped[3] = swapped[3], swapped[2]
	swapped[2].Seq, swapped[3].Seq = 3, 4
	_, err = verify(swapped, nil)
	brokenAt(t, err, 3, "does not link")

	// The newest events removed: only a head recorded earlier shows it.
	recorded := Head{events[5].Seq, events[5].Hash}
	if _, err := verify(events[:4], nil); err != nil {
		t.Fatalf("a truncated chain verifies on its own: %v", err)
	}
	_, err = verify(events[:4], &recorded)
	brokenAt(t, err, 5, "events 5 to 6 were removed")

	// A chain rewritten from some point on does not pass the head.
	rewritten := chain(6)
	rewritten[5].Actor = "cli:mallory"
	Seal(rewritten[5], rewritten[4].Seq, rewritten[4].Hash)
	_, err = verify(rewritten, &recorded)
	brokenAt(t, err, 6, "rewritten")
}

// Length prefixes keep fields apart: moving bytes from one field to the
// next changes the hash.
func TestHashSeparatesFields(t *testing.T) {
	a := &Event{Seq: 1, Actor: "ab", Action: "c", Prev: Genesis}
	b := &Event{Seq: 1, Actor: "a", Action: "bc", Prev: Genesis}
	if bytes.Equal(Hash(a), Hash(b)) {
		t.Fatal("fields are not separated in the hash")
	}
	if len(Hash(a)) != HashLen {
		t.Fatalf("hash length %d", len(Hash(a)))
	}
	// The encoding is fixed: a change of it must be a new version, which
	// this known answer catches.
	known := &Event{Seq: 1, Time: time.Unix(1_800_000_000, 0).UTC(), Actor: "cli:alice", Action: "create",
		KeyID: "AAAAAAAAAAAA", Owner: "acme", After: `{"id":"AAAAAAAAAAAA"}`, Prev: Genesis}
	if got := fmt.Sprintf("%x", Hash(known)); got != knownHash {
		t.Fatalf("hash of the known event changed: %s", got)
	}
}

const knownHash = "f3d706dfc4708aa9899727af548c2a25a85ab7e0854ea97de22846de1fa46bec"

func TestHeadText(t *testing.T) {
	events := chain(3)
	h := Head{events[2].Seq, events[2].Hash}
	got, err := ParseHead(h.String())
	if err != nil || got.Seq != 3 || !bytes.Equal(got.Hash, h.Hash) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range []string{"", "3", ":" + strings.Repeat("a", 64), "0:" + strings.Repeat("a", 64), "-1:" + strings.Repeat("a", 64),
		"3:" + strings.Repeat("a", 63), "3:" + strings.Repeat("g", 64), "3:" + strings.Repeat("a", 66), "x:" + strings.Repeat("a", 64)} {
		if _, err := ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) accepted", bad)
		}
	}
}
