package audit

import "time"

// Event is one lifecycle audit event: who changed which key how, with the
// key's non-secret fields before and after, chained to the event before
// it by Prev and Hash. Stores keep the fields exactly as sealed, so that a
// hash computed when the event was appended still holds when it is read.
type Event struct {
	// Seq numbers events from 1 without gaps, in the order of the chain.
	Seq int64 `json:"seq"`
	// Time is when the change was made, to the microsecond, in UTC.
	Time time.Time `json:"time"`
	// Actor is who made it: "cli:<user>", a name given with --actor, or
	// the admin API's caller.
	Actor string `json:"actor"`
	// Action is what was done: ActionCreate, ActionRevoke, …
	Action string `json:"action"`
	// KeyID and Owner name the key changed.
	KeyID string `json:"key_id"`
	Owner string `json:"owner,omitempty"`
	// Before and After are the key's record as JSON (never its secret or
	// digest); empty when there is no such state (before a create).
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
	// Prev is the hash of the event before (Genesis for the first), Hash
	// the hash of this one (see Hash).
	Prev []byte `json:"prev"`
	Hash []byte `json:"hash"`
}

// Actions: what a lifecycle change did.
const (
	ActionCreate = "create"
	ActionRevoke = "revoke"
	// ActionUpdate changes a key's fields, not its secret.
	ActionUpdate = "update"
	// ActionRotate retires a key in favour of a new one (created with
	// its own create event), after a grace period.
	ActionRotate = "rotate"
	// ActionDelete removes a key's record; its events stay.
	ActionDelete = "delete"
	// ActionOwnerLimits sets or clears the limits an owner's keys share:
	// the event has the owner, no key id, and the limits before and after
	// as JSON.
	ActionOwnerLimits = "owner_limits"
	// ActionImport stores a key a legacy system issued (its digest).
	ActionImport = "import"
	// ActionSigningKeyCreate stores the first signing key of identity
	// tokens, ActionSigningKeyRotate replaces the current one. KeyID is the
	// new signing key's kid; Before and After hold public fields only
	// (kid, algorithm, public key, times), never the private key.
	ActionSigningKeyCreate = "signing_key_create"
	ActionSigningKeyRotate = "signing_key_rotate"
)

// Filter selects events to list.
type Filter struct {
	KeyID string    // only this key's events
	Owner string    // only events of this owner's keys
	Since time.Time // only events at or after this time
	// AfterSeq, if set, skips events up to this sequence number.
	AfterSeq int64
}
