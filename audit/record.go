package audit

import (
	"encoding/hex"
	"encoding/json"
	"time"
)

// Record is an event as the CLI's `audit --json` and the admin API show
// it: states as JSON objects, hashes in hex.
type Record struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	KeyID  string    `json:"key_id"`
	Owner  string    `json:"owner,omitempty"`
	Before any       `json:"before"`
	After  any       `json:"after"`
	Prev   string    `json:"prev"`
	Hash   string    `json:"hash"`
}

// RecordOf returns e as a Record.
func RecordOf(e *Event) Record {
	return Record{e.Seq, e.Time, e.Actor, e.Action, e.KeyID, e.Owner,
		state(e.Before), state(e.After), hex.EncodeToString(e.Prev), hex.EncodeToString(e.Hash)}
}

// state is a stored state as shown: the JSON object it holds, null when
// empty, or the text itself if it is not JSON (a row edited by hand is
// shown as it is).
func state(s string) any {
	switch {
	case s == "":
		return nil
	case json.Valid([]byte(s)):
		return json.RawMessage(s)
	default:
		return s
	}
}
