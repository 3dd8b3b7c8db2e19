package keystore

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Key is the stored record of an API key. It never holds the key itself,
// only its digest and a hint.
type Key struct {
	// ID is the public key id, also embedded in the key.
	ID string `json:"id"`
	// Name says what the key is for; required.
	Name string `json:"name"`
	// Owner names the customer or account the key belongs to.
	Owner string `json:"owner,omitempty"`
	// Scopes the key grants, sorted and without duplicates.
	Scopes []string `json:"scopes,omitempty"`
	// Metadata is free-form, for the operator's own bookkeeping.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Hint identifies the key to people (prefix, id, last characters)
	// without being usable.
	Hint string `json:"hint"`
	// CreatedAt is when the key was issued.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt, if not zero, is when the key stops working.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// RevokedAt, if not zero, is when the key was revoked.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// NotBefore, if not zero, is when the key starts to work.
	NotBefore time.Time `json:"not_before,omitzero"`
	// Replaces is the id of the key this one replaced in a rotation;
	// ReplacedBy the id of the key that replaced this one.
	Replaces   string `json:"replaces,omitempty"`
	ReplacedBy string `json:"replaced_by,omitempty"`
	// AllowCIDRs, if any, are the networks the key may be used from
	// (Caddy's client IP; IPv4-mapped IPv6 addresses match as IPv4).
	AllowCIDRs []netip.Prefix `json:"allow_cidrs,omitempty"`
	// Limits are the key's own rate limit, quota and uses; nil for none.
	Limits *Limits `json:"limits,omitempty"`
	// OwnerLimits are the limits its owner's keys share, as Lookup read
	// them with the key; nil for none. They are the owner's, not the
	// key's: not part of its audit record.
	OwnerLimits *Limits `json:"-"`
	// Digest is the peppered hash of the key.
	Digest Digest `json:"-"`
	// PepperID names the pepper Digest was made with (Hasher.ID); empty
	// for a key made before stores recorded it and never re-hashed.
	PepperID string `json:"-"`
}

// Status values returned by Key.Status.
const (
	StatusActive  = "active"
	StatusExpired = "expired"
	StatusRevoked = "revoked"
	// StatusNotYetValid: before the key's NotBefore.
	StatusNotYetValid = "not_yet_valid"
)

// Status tells whether the key works at now. Revocation wins over expiry,
// expiry over a start still to come.
func (k *Key) Status(now time.Time) string {
	switch {
	case !k.RevokedAt.IsZero() && !now.Before(k.RevokedAt):
		return StatusRevoked
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return StatusExpired
	case !k.NotBefore.IsZero() && now.Before(k.NotBefore):
		return StatusNotYetValid
	default:
		return StatusActive
	}
}

// HasScopes reports whether the key grants every scope in want. A key
// scope "orders:*" grants every scope under "orders:" ("orders:read",
// "orders:refunds:write"); "*" grants every scope.
func (k *Key) HasScopes(want []string) bool {
	for _, s := range want {
		if !k.grants(s) {
			return false
		}
	}
	return true
}

func (k *Key) grants(scope string) bool {
	if _, found := slices.BinarySearch(k.Scopes, scope); found {
		return true
	}
	for _, g := range k.Scopes {
		if g == "*" || strings.HasSuffix(g, ":*") && len(scope) > len(g)-1 && strings.HasPrefix(scope, g[:len(g)-1]) {
			return true
		}
	}
	return false
}

// Limits on the fields of a key. They keep records, headers and logs of a
// sane size and make every bad value a clear error instead of a surprise.
const (
	MaxNameLen       = 200
	MaxOwnerLen      = 200
	MaxScopes        = 64
	MaxScopeLen      = 64
	MaxMetadata      = 32
	MaxMetadataKey   = 64
	MaxMetadataValue = 1024
)

// NewKeyParams are the caller-chosen fields of a new key.
type NewKeyParams struct {
	Name      string
	Owner     string
	Scopes    []string
	Metadata  map[string]string
	ExpiresAt time.Time
	NotBefore time.Time
	Limits    *Limits
	// AllowCIDRs limits the networks the key may be used from.
	AllowCIDRs []netip.Prefix
}

// Validate checks every field and returns the first problem found. It
// normalises Scopes (sorted, duplicates removed).
func (p *NewKeyParams) Validate(now time.Time) error {
	if strings.TrimSpace(p.Name) == "" {
		return fmt.Errorf("name is required")
	}
	if err := checkText("name", p.Name, MaxNameLen); err != nil {
		return err
	}
	if err := checkText("owner", p.Owner, MaxOwnerLen); err != nil {
		return err
	}
	if len(p.Scopes) > MaxScopes {
		return fmt.Errorf("too many scopes: %d (at most %d)", len(p.Scopes), MaxScopes)
	}
	for _, s := range p.Scopes {
		if err := ValidateScope(s); err != nil {
			return err
		}
	}
	p.Scopes = slices.Compact(slices.Sorted(slices.Values(p.Scopes)))
	if len(p.Metadata) > MaxMetadata {
		return fmt.Errorf("too many metadata entries: %d (at most %d)", len(p.Metadata), MaxMetadata)
	}
	for k, v := range p.Metadata {
		if err := validateMetadataKey(k); err != nil {
			return err
		}
		if err := checkText("metadata value for "+k, v, MaxMetadataValue); err != nil {
			return err
		}
	}
	if !p.ExpiresAt.IsZero() && !p.ExpiresAt.After(now) {
		return fmt.Errorf("expiry %s is not in the future", p.ExpiresAt.Format(time.RFC3339))
	}
	if !p.NotBefore.IsZero() && !p.ExpiresAt.IsZero() && !p.NotBefore.Before(p.ExpiresAt) {
		return fmt.Errorf("not-before %s is not before the expiry %s", p.NotBefore.UTC().Format(time.RFC3339), p.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if len(p.AllowCIDRs) > MaxCIDRs {
		return fmt.Errorf("too many networks: %d (at most %d)", len(p.AllowCIDRs), MaxCIDRs)
	}
	p.AllowCIDRs = normalizeCIDRs(p.AllowCIDRs)
	if err := p.Limits.Validate(); err != nil {
		return err
	}
	if p.Limits.IsZero() {
		p.Limits = nil
	}
	return nil
}

// ValidateScope checks one scope name: 1 to MaxScopeLen characters of
// [A-Za-z0-9] and ":._-/*".
func ValidateScope(s string) error {
	if s == "" || len(s) > MaxScopeLen {
		return fmt.Errorf("scope %q must be 1 to %d characters long", s, MaxScopeLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isBase62(c) && !strings.ContainsRune(":._-/*", rune(c)) {
			return fmt.Errorf("scope %q may contain only letters, digits and : . _ - / *", s)
		}
	}
	if star := strings.IndexByte(s, '*'); star >= 0 && s != "*" && (star != len(s)-1 || !strings.HasSuffix(s, ":*")) {
		return fmt.Errorf("scope %q: * may only be a whole last segment (orders:*) or the whole scope (*)", s)
	}
	return nil
}

func validateMetadataKey(k string) error {
	if k == "" || len(k) > MaxMetadataKey {
		return fmt.Errorf("metadata key %q must be 1 to %d characters long", k, MaxMetadataKey)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !isBase62(c) && !strings.ContainsRune("._-", rune(c)) {
			return fmt.Errorf("metadata key %q may contain only letters, digits and . _ -", k)
		}
	}
	return nil
}

// checkText accepts printable UTF-8 without control characters; such text
// is safe to show in a terminal, a log line or an HTTP header value.
func checkText(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s is too long: %d bytes (at most %d)", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s contains a control character", field)
		}
	}
	return nil
}
