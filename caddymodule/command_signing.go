package caddymodule

import (
	"encoding/base64"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/signing"
)

func signingKeyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "signing-key rotate|list",
		Short: "Rotates or lists the keys identity tokens are signed with",
		Long: `Gateways with identity_jwt sign a token of each request's identity with
the store's current signing key (Ed25519); upstreams verify it with the
JWKS that api_key_jwks serves. The first gateway to start creates the key.
See docs/signed-identity.md.`,
		Args: cobra.NoArgs,
	}
	c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	c.AddCommand(signingKeyRotateCommand(), signingKeyListCommand())
	return c
}

func signingKeyRotateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "rotate [--activate-in 1m] [--actor NAME] [--json]",
		Short: "Makes a new signing key; the current one stays published until its tokens expire",
		Long: fmt.Sprintf(`Makes a new signing key. It is published in the JWKS at once, and every
gateway signs with it from --activate-in on (picked up within its
identity_jwt refresh, 30s by default). The key it replaces keeps signing
until then and stays published for %s after, so that tokens signed
with it keep verifying until they expire. The audit trail records the
rotation (action signing_key_rotate). Needs the gateways' pepper: the
private key is stored sealed under a key derived from it.`, signing.RetireAfter),
		Args: cobra.NoArgs,
	}
	c.Flags().Duration("activate-in", signing.DefaultActivateIn, "How long the new key is published before gateways sign with it (0 to 1h)")
	c.Flags().Bool("json", false, "Print the new and the replaced key as JSON")
	addActorFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		activateIn, _ := cmd.Flags().GetDuration("activate-in")
		asJSON, _ := cmd.Flags().GetBool("json")
		return withStore(cmd, pepperRequired, existingOnly, func(e *cliEnv, s keystore.Store, h *keystore.Hasher) error {
			sealer, err := signing.NewSealer(h)
			if err != nil {
				return err
			}
			next, prev, err := signing.Rotate(e.ctx, s, sealer, e.actor, time.Now(), activateIn)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(e.out, struct {
					Key      signingKeyJSON  `json:"key"`
					Replaced *signingKeyJSON `json:"replaced,omitempty"`
				}{signingKeyView(next), signingKeyViewOrNil(prev)})
			}
			fmt.Fprintf(e.out, "New signing key %s, published now, signing from %s.\n", next.KID, formatTime(next.ActivatedAt))
			if prev != nil {
				fmt.Fprintf(e.out, "Replaced key %s stays published until %s.\n", prev.KID, formatTime(prev.RetiresAt))
			}
			return nil
		})
	}
	return c
}

func signingKeyListCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "list [--all] [--json]",
		Short: "Lists the signing keys in the JWKS (with --all, retired ones too)",
		Args:  cobra.NoArgs,
	}
	c.Flags().Bool("all", false, "Include keys no longer published")
	c.Flags().Bool("json", false, "Print the keys as a JSON array")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		all, _ := cmd.Flags().GetBool("all")
		asJSON, _ := cmd.Flags().GetBool("json")
		return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			now := time.Now()
			keys, err := s.SigningKeys(e.ctx, now, all)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]signingKeyJSON, 0, len(keys))
				for _, k := range keys {
					out = append(out, signingKeyView(k))
				}
				return writeJSON(e.out, out)
			}
			if len(keys) == 0 {
				fmt.Fprintln(e.errOut, "No signing key: the first gateway with identity_jwt creates one.")
				return nil
			}
			tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tACTIVATED\tRETIRES")
			signer := ""
			if published, err := s.SigningKeys(e.ctx, now, false); err == nil && len(published) > 0 {
				signer = signing.Pick(published, now).KID
			}
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.KID, k.Algorithm, signingKeyState(k, signer, now),
					formatTime(k.CreatedAt), formatTime(k.ActivatedAt), dash(formatTime(k.RetiresAt)))
			}
			return tw.Flush()
		})
	}
	return c
}

// signingKeyState says what a key is for gateways now.
func signingKeyState(k *keystore.SigningKey, signer string, now time.Time) string {
	switch {
	case k.KID == signer:
		return "signing"
	case !k.Published(now):
		return "retired"
	case k.RetiresAt.IsZero():
		return "next"
	}
	return "retiring"
}

// signingKeyJSON is a signing key as the CLI prints it: public fields
// only.
type signingKeyJSON struct {
	KID         string    `json:"kid"`
	Algorithm   string    `json:"alg"`
	PublicKey   string    `json:"public_key"` // base64url, as in the JWKS's x
	CreatedAt   time.Time `json:"created_at"`
	ActivatedAt time.Time `json:"activated_at"`
	RetiresAt   time.Time `json:"retires_at,omitzero"`
}

func signingKeyView(k *keystore.SigningKey) signingKeyJSON {
	return signingKeyJSON{k.KID, k.Algorithm, base64.RawURLEncoding.EncodeToString(k.PublicKey), k.CreatedAt, k.ActivatedAt, k.RetiresAt}
}

func signingKeyViewOrNil(k *keystore.SigningKey) *signingKeyJSON {
	if k == nil {
		return nil
	}
	v := signingKeyView(k)
	return &v
}
