package keystore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Peppers are the peppers a process hashes keys with during a pepper
// rotation. Current hashes every new key and every re-hash. A key made
// with a Previous pepper still verifies, and a gateway re-hashes it with
// Current on its first successful use. A key made with Next verifies too,
// but is left as it is: Next is how every gateway of a fleet learns the
// new pepper before any of them starts to use it (see docs/operations.md).
type Peppers struct {
	Current  *Hasher
	Previous []*Hasher
	Next     *Hasher
}

// NewPeppers builds the hashers of a rotation from the peppers
// themselves; previous and next may be empty. Each pepper must pass
// ValidatePepper, and no pepper may be given twice.
func NewPeppers(current []byte, previous [][]byte, next []byte) (Peppers, error) {
	var p Peppers
	var err error
	if p.Current, err = NewHasher(current); err != nil {
		return Peppers{}, err
	}
	for i, prev := range previous {
		h, err := NewHasher(prev)
		if err != nil {
			return Peppers{}, fmt.Errorf("previous pepper %d: %w", i+1, err)
		}
		p.Previous = append(p.Previous, h)
	}
	if next != nil {
		if p.Next, err = NewHasher(next); err != nil {
			return Peppers{}, fmt.Errorf("next pepper: %w", err)
		}
	}
	seen := map[Digest]bool{}
	for _, h := range p.All() {
		if seen[h.check] {
			return Peppers{}, errors.New("the same pepper is given twice (as the pepper, a previous or the next pepper); give each once")
		}
		seen[h.check] = true
	}
	return p, nil
}

// All returns the hashers in the order a lookup tries them: current,
// then previous ones as given, then next.
func (p Peppers) All() []*Hasher {
	all := []*Hasher{}
	if p.Current != nil {
		all = append(all, p.Current)
	}
	all = append(all, p.Previous...)
	if p.Next != nil {
		all = append(all, p.Next)
	}
	return all
}

// Others returns the hashers besides Current: those a lookup falls back
// on when the current pepper does not find a key.
func (p Peppers) Others() []*Hasher {
	others := slices.Clone(p.Previous)
	if p.Next != nil {
		others = append(others, p.Next)
	}
	return others
}

// Rotating reports whether any pepper besides Current is configured.
func (p Peppers) Rotating() bool { return len(p.Previous) > 0 || p.Next != nil }

// IsPrevious reports whether h is one of the previous peppers: a key
// found with it is re-hashed with Current.
func (p Peppers) IsPrevious(h *Hasher) bool { return slices.Contains(p.Previous, h) }

// Role names what the pepper with id is to this process: "current",
// "previous", "next", or "" for a pepper it does not have.
func (p Peppers) Role(id string) string {
	switch {
	case p.Current != nil && p.Current.ID() == id:
		return "current"
	case p.Next != nil && p.Next.ID() == id:
		return "next"
	}
	for _, h := range p.Previous {
		if h.ID() == id {
			return "previous"
		}
	}
	return ""
}

// SetOptions puts the check values of p's peppers into opts, so that
// opening a store verifies them and registers new ones (see Setup).
func (p Peppers) SetOptions(opts *Options) {
	opts.PepperCheck, opts.PreviousPepperChecks, opts.NextPepperCheck = Digest{}, nil, Digest{}
	if p.Current != nil {
		opts.PepperCheck = p.Current.PepperCheck()
	}
	for _, h := range p.Previous {
		opts.PreviousPepperChecks = append(opts.PreviousPepperChecks, h.PepperCheck())
	}
	if p.Next != nil {
		opts.NextPepperCheck = p.Next.PepperCheck()
	}
}

// Lookup finds the key of k with each pepper in turn (All's order) and
// returns it with the hasher that found it: ErrNotFound when none does.
func (p Peppers) Lookup(ctx context.Context, keys interface {
	Lookup(context.Context, Digest) (*Key, error)
}, k ParsedKey) (*Key, *Hasher, error) {
	for _, h := range p.All() {
		key, err := keys.Lookup(ctx, h.Digest(k))
		if err == nil {
			return key, h, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, nil, err
		}
	}
	return nil, nil, ErrNotFound
}

// PepperUse is what pepper-status reports of one pepper: whether it is
// registered in the store, when, and how many keys are still hashed with
// it.
type PepperUse struct {
	// ID is the pepper's id (Hasher.ID); empty for keys made before the
	// store recorded peppers with keys and never re-hashed since.
	ID string `json:"id"`
	// Registered is when a process first registered the pepper in the
	// store; zero for a pepper only keys name.
	Registered time.Time `json:"registered_at,omitzero"`
	// Newest: the pepper registered last, the only one a key may be
	// re-hashed to.
	Newest bool `json:"newest,omitempty"`
	// Keys counts every key hashed with the pepper; Working those that
	// work now or will (active or not yet valid).
	Keys    int `json:"keys"`
	Working int `json:"working"`
}

// ErrNotNewestPepper: a re-hash to a pepper that is not the newest one
// registered in the store.
var ErrNotNewestPepper = errors.New("the pepper is not the newest one registered in the key store")
