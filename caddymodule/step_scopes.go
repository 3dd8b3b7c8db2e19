package caddymodule

import (
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// Step 4: the key must grant every scope the route requires.
type scopeCheck struct {
	scopes  []string
	problem *problem
}

func (c scopeCheck) check(x exchange) verdict {
	if !x.key.HasScopes(c.scopes) {
		return verdict{problem: c.problem, why: "API key lacks required scopes"}
	}
	return verdict{}
}

// validateScopes checks the scopes a route requires.
func (h *Handler) validateScopes() error {
	for _, s := range h.Scopes {
		if err := keystore.ValidateScope(s); err != nil {
			return fmt.Errorf("scopes: %v", err)
		}
	}
	return nil
}
