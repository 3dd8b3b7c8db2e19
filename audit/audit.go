// Package audit makes Keygate's lifecycle audit trail tamper-evident.
// Every event (who changed which key how, with the key's non-secret
// fields before and after) carries the hash of the event
// before it and a hash of its own over its content and that link, from a
// fixed genesis. Editing an event breaks its hash, removing or reordering
// events breaks the links, and removing the newest events is caught by
// comparing with a head (sequence number and hash) recorded earlier
// elsewhere: Keygate logs the head at start and every hour, so an
// operator's log pipeline keeps the outside copy.
//
// The chain shows that events changed; it cannot stop someone who can
// rewrite the whole table from rewriting the whole chain, which only the
// outside copy of the head reveals.
//
// No Caddy or database import: this package defines the events, seals
// and checks them; stores keep them.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HashLen is the length of every hash in the chain.
const HashLen = sha256.Size

// Genesis is the link of the first event: a fixed value, so that a chain
// cannot be started over from an arbitrary point.
var Genesis = func() []byte {
	h := sha256.Sum256([]byte("keygate audit genesis v1"))
	return h[:]
}()

// encodingVersion starts every hashed encoding; a change of the encoding
// is a new version, never an edit of this one.
const encodingVersion = "keygate audit v1\x00"

// Hash computes the hash of e: SHA-256 over a canonical encoding of its
// sequence number, time (microseconds), actor, action, key id, owner,
// before, after and the previous hash, each string length-prefixed so that
// no two events share an encoding.
func Hash(e *Event) []byte {
	var b bytes.Buffer
	b.WriteString(encodingVersion)
	var n [binary.MaxVarintLen64]byte
	b.Write(n[:binary.PutUvarint(n[:], uint64(e.Seq))])
	b.Write(n[:binary.PutVarint(n[:], e.Time.UnixMicro())])
	for _, s := range []string{e.Actor, e.Action, e.KeyID, e.Owner, e.Before, e.After} {
		b.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		b.WriteString(s)
	}
	b.Write(n[:binary.PutUvarint(n[:], uint64(len(e.Prev)))])
	b.Write(e.Prev)
	h := sha256.Sum256(b.Bytes())
	return h[:]
}

// Seal links e to the chain whose last event has sequence number seq and
// hash prev (0 and nil for an empty chain) and sets its hash. A store
// calls it while it holds the chain's head, so that writers in every
// process produce one chain.
func Seal(e *Event, seq int64, prev []byte) {
	e.Seq = seq + 1
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	if prev == nil {
		prev = Genesis
	}
	e.Prev = bytes.Clone(prev)
	e.Hash = Hash(e)
}

// Head names a point of the chain: an event's sequence number and hash.
// Its text form is "SEQ:HEX".
type Head struct {
	Seq  int64
	Hash []byte
}

func (h Head) String() string { return strconv.FormatInt(h.Seq, 10) + ":" + hex.EncodeToString(h.Hash) }

// ParseHead reads "SEQ:HEX".
func ParseHead(s string) (Head, error) {
	seq, hx, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 {
		return Head{}, fmt.Errorf("head %q is not SEQ:HASH (a sequence number from 1, a colon, a hex hash)", s)
	}
	h, err := hex.DecodeString(hx)
	if err != nil || len(h) != HashLen {
		return Head{}, fmt.Errorf("head %q: the hash must be %d hex digits", s, 2*HashLen)
	}
	return Head{Seq: n, Hash: h}, nil
}

// BrokenError says where a chain stops holding.
type BrokenError struct {
	Seq    int64  // the first event that does not hold
	Reason string // what is wrong with it
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit chain broken at event %d: %s", e.Seq, e.Reason)
}

// Chain checks events handed to Add in order, from the first.
type Chain struct {
	next    int64  // the sequence number the next event must have
	prev    []byte // the hash the next event must link to
	want    *Head  // a head recorded earlier, to check on the way
	matched bool
}

// NewChain starts a check at the genesis. If want is not nil, the chain
// must also pass through that head (see Finish).
func NewChain(want *Head) *Chain { return &Chain{next: 1, prev: Genesis, want: want} }

// Add checks the next event.
func (c *Chain) Add(e *Event) error {
	switch {
	case e.Seq > c.next:
		return &BrokenError{c.next, fmt.Sprintf("events %d to %d are missing (removed)", c.next, e.Seq-1)}
	case e.Seq < c.next:
		return &BrokenError{e.Seq, "out of order"}
	case !bytes.Equal(e.Prev, c.prev):
		return &BrokenError{e.Seq, fmt.Sprintf("it does not link to event %d: events were altered, removed or reordered there", e.Seq-1)}
	case !bytes.Equal(Hash(e), e.Hash):
		return &BrokenError{e.Seq, "its content does not match its hash: it was altered"}
	}
	if c.want != nil && e.Seq == c.want.Seq {
		if !bytes.Equal(e.Hash, c.want.Hash) {
			return &BrokenError{e.Seq, fmt.Sprintf("it is not the event of the head %s recorded earlier: the chain was rewritten", c.want)}
		}
		c.matched = true
	}
	c.prev, c.next = e.Hash, c.next+1
	return nil
}

// Finish ends the check and returns the chain's head (Seq 0 when empty).
// With a head recorded earlier, a chain that ends before it lost its
// newest events.
func (c *Chain) Finish() (Head, error) {
	head := Head{Seq: c.next - 1, Hash: c.prev}
	if head.Seq == 0 {
		head.Hash = nil
	}
	if c.want != nil && !c.matched {
		return head, &BrokenError{head.Seq + 1, fmt.Sprintf("the chain ends at event %d, but head %s was recorded: events %d to %d were removed",
			head.Seq, c.want, head.Seq+1, c.want.Seq)}
	}
	return head, nil
}
