package keystore

import "errors"

// Kinds of refusal a Lifecycle change gives, besides ErrNotFound and
// ErrDuplicate; match them with errors.Is. The admin API answers them
// with 422 and 409, where any other error is the store's failure.
var (
	// ErrInvalid: the change was refused for its values (a name too
	// long, a scope with a space, a grace too long, a bad import row).
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the change does not fit the key's state (changing or
	// rotating a revoked key).
	ErrConflict = errors.New("the key's state does not allow this change")
)

// kindError is an error of one of the kinds above; its message is its
// cause's alone.
type kindError struct{ cause, kind error }

func (e *kindError) Error() string   { return e.cause.Error() }
func (e *kindError) Unwrap() []error { return []error{e.cause, e.kind} }

// invalid marks err as ErrInvalid; nil stays nil.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return &kindError{err, ErrInvalid}
}

// conflict marks err as ErrConflict.
func conflict(err error) error { return &kindError{err, ErrConflict} }
