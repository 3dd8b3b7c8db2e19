package caddymodule

import "github.com/keygate/keygate/keystore"

// Step 3: the key's status at the instant the request came, by the
// handler's clock, so that a cached key expires at the exact instant.
// Revocation wins over expiry, expiry over a start still to come: a
// revoked key gets the answer an unknown one gets.
type statusCheck struct{ problems *problems }

func (c statusCheck) check(x exchange) verdict {
	switch x.key.Status(x.now) {
	case keystore.StatusRevoked:
		return verdict{problem: c.problems.invalid, failed: true, why: "revoked API key"}
	case keystore.StatusExpired:
		return verdict{problem: c.problems.expired, why: "expired API key"}
	case keystore.StatusNotYetValid:
		return verdict{problem: c.problems.notYetValid, why: "API key not valid yet"}
	}
	return verdict{}
}
