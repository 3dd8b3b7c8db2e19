package signing

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/keygate/keygate/keystore"
)

// Config is what an issuer puts in its tokens.
type Config struct {
	// Issuer is the iss claim.
	Issuer string
	// Audience is the aud claim: the upstream the tokens are for.
	Audience string
	// Lifetime is exp - iat.
	Lifetime time.Duration
}

// Bounds of Config.Lifetime.
const MinLifetime = 10 * time.Second

// Validate checks c.
func (c Config) Validate() error {
	if c.Issuer == "" {
		return errors.New("issuer is empty")
	}
	if c.Audience == "" {
		return errors.New("audience is required: the name the upstream checks tokens are for")
	}
	if c.Lifetime < MinLifetime || c.Lifetime > MaxLifetime {
		return fmt.Errorf("lifetime %s is not between %s and %s", c.Lifetime, MinLifetime, MaxLifetime)
	}
	return nil
}

// Issuer signs identity tokens and reuses each key's token until less
// than half of its lifetime is left, so that signing (about 20µs for
// Ed25519) is not on every request. It is safe for concurrent use; a
// cache hit takes no lock and does not allocate.
type Issuer struct {
	cfg   Config
	ring  *Keyring
	cache sync.Map // key id -> *cached
	size  atomic.Int64
}

// maxCached bounds the tokens an issuer keeps; past it the cache starts
// over (each key then signs once more).
const maxCached = 100000

type cached struct {
	token     string
	kid       string
	owner     string
	scopes    []string
	refreshAt time.Time
}

// NewIssuer returns an issuer of tokens with cfg, signed with ring's key.
func NewIssuer(cfg Config, ring *Keyring) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Issuer{cfg: cfg, ring: ring}, nil
}

// Claims are an identity token's claims.
type Claims struct {
	jwt.Claims
	// Owner is the key's owner.
	Owner string `json:"owner,omitempty"`
	// Scopes are the key's scopes (an empty array for none).
	Scopes []string `json:"scopes"`
}

// Token returns the token of k at now: the cached one if it was signed
// with the current key for k's present owner and scopes and has more than
// half its lifetime left, else a new one.
func (i *Issuer) Token(k *keystore.Key, now time.Time) (string, error) {
	s := i.ring.Signer()
	if s == nil {
		return "", ErrNoSigner
	}
	if v, ok := i.cache.Load(k.ID); ok {
		c := v.(*cached)
		if c.kid == s.KID && now.Before(c.refreshAt) && c.owner == k.Owner && slices.Equal(c.scopes, k.Scopes) {
			return c.token, nil
		}
	}
	tok, err := i.sign(s, k, now)
	if err != nil {
		return "", err
	}
	c := &cached{token: tok, kid: s.KID, owner: k.Owner, scopes: slices.Clone(k.Scopes), refreshAt: now.Add(i.cfg.Lifetime / 2)}
	if _, loaded := i.cache.Swap(k.ID, c); !loaded {
		if i.size.Add(1) > maxCached {
			i.cache.Clear()
			i.size.Store(0)
		}
	}
	return tok, nil
}

func (i *Issuer) sign(s *Signer, k *keystore.Key, now time.Time) (string, error) {
	var jti [16]byte
	rand.Read(jti[:])
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	now = now.Truncate(time.Second)
	c := Claims{
		Claims: jwt.Claims{
			Issuer:   i.cfg.Issuer,
			Subject:  k.ID,
			Audience: jwt.Audience{i.cfg.Audience},
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(i.cfg.Lifetime)),
			ID:       base64.RawURLEncoding.EncodeToString(jti[:]),
		},
		Owner:  k.Owner,
		Scopes: scopes,
	}
	tok, err := jwt.Signed(s.signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("signing the identity token: %w", err)
	}
	return tok, nil
}
