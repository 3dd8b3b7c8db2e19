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

// ErrCannotMigrate: the store's schema is older than this build and the
// database role in use may not change it (a gateway's runtime role).
var ErrCannotMigrate = errors.New("the key store's schema is older than this Keygate build and this role cannot migrate it: " +
	"run `caddy api-key migrate` as the owner role")

// ErrCannotRecordPepperCheck: the store has no pepper check yet and the
// role in use may not record one, so the pepper cannot be verified.
var ErrCannotRecordPepperCheck = errors.New("the key store has no pepper check recorded yet and this role may not record one, " +
	"so the pepper cannot be verified: record it first as the management role " +
	"(create the first key with `caddy api-key create`, or run `caddy api-key migrate` with the pepper)")

// PermissionDenied reports whether err is the database's refusal for
// want of a privilege (SQLSTATE 42501): the role in use may not do what
// was asked, which retrying will not change.
func PermissionDenied(err error) bool {
	var coded interface{ SQLState() string }
	return errors.As(err, &coded) && coded.SQLState() == "42501"
}
