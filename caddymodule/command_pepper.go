package caddymodule

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

// errKeysOnOlderPeppers is pepper-status --check's failure.
var errKeysOnOlderPeppers = errors.New("working keys are still hashed with a pepper older than the newest")

func pepperStatusCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "pepper-status [--check] [--json]",
		Short: "Shows how many keys are still hashed with each pepper of a rotation",
		Long: `Lists the peppers registered in the key store, oldest first, and how many
keys each one hashed (working: active or not yet valid). Peppers are shown by
id (the first 8 bytes of their check value), never by value; with the
peppers given (--pepper-file, --previous-pepper-file, --next-pepper-file) the
HERE column says which is which.

Run with the management role and the new pepper given, it also registers
the peppers the store does not know yet, which is how the newest pepper of a
rotation gets registered where gateways may not do it themselves. A key made
with a previous pepper is re-hashed with the current pepper at its first use;
once no working key is left on an older pepper, remove it from
previous_peppers (see docs/operations.md). --check exits with status 1
while any is left.`,
		Args: cobra.NoArgs,
	}
	c.Flags().Bool("check", false, "Exit with status 1 while working keys are hashed with a pepper older than the newest")
	c.Flags().Bool("json", false, "Print a JSON array instead of a table")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		check, _ := cmd.Flags().GetBool("check")
		asJSON, _ := cmd.Flags().GetBool("json")
		return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			uses, err := s.PepperUses(e.ctx, time.Now())
			if err != nil {
				return err
			}
			left := 0
			for _, u := range uses {
				if !u.Newest {
					left += u.Working
				}
			}
			if asJSON {
				type use struct {
					keystore.PepperUse
					Here string `json:"here,omitempty"`
				}
				out := make([]use, len(uses))
				for i, u := range uses {
					out[i] = use{u, e.peppers.Role(u.ID)}
				}
				if err := writeJSON(e.out, out); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PEPPER\tHERE\tREGISTERED\tKEYS\tWORKING\t")
				for _, u := range uses {
					id, registered, here := u.ID, "-", e.peppers.Role(u.ID)
					if id == "" {
						id = "(unrecorded)"
					}
					if !u.Registered.IsZero() {
						registered = u.Registered.Format(time.RFC3339)
					}
					if u.Newest {
						registered += " (newest)"
					}
					if here == "" {
						here = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t\n", id, here, registered, u.Keys, u.Working)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if left > 0 {
					fmt.Fprintf(e.out, "%d working keys are still hashed with an older pepper: keep it in previous_peppers until they are re-hashed at their next use.\n", left)
				} else {
					fmt.Fprintln(e.out, "Every working key is hashed with the newest pepper: older peppers can be removed from previous_peppers.")
				}
			}
			if check && left > 0 {
				return fmt.Errorf("%w: %d", errKeysOnOlderPeppers, left)
			}
			return nil
		})
	}
	return c
}
