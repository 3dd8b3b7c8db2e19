package caddymodule

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

func ownerCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "owner OWNER [--rate 1000/m [--burst N]] [--quota N/day|N/month] [--clear] [--actor NAME] [--json]",
		Short: "Shows or sets the limits all of an owner's keys share",
		Long: `Shows the limits all of an owner's keys share, or sets them: a rate
(--rate, --burst) that the owner's keys spend together, and a quota
(--quota) they count against together, on top of each key's own limits.
Setting replaces every limit of the owner; --clear removes them. Every
gateway sees the change within the same bound as a revocation, and the
audit trail records it (action owner_limits).`,
		Args: cobra.ExactArgs(1),
	}
	c.Flags().String("rate", "", "The owner's rate limit: N/s, N/m or N/h, shared by all of its keys")
	c.Flags().Int("burst", 0, "Requests the owner's keys may send at once with --rate (default: N)")
	c.Flags().String("quota", "", "Requests per calendar day or month in UTC for all of the owner's keys: N/day or N/month")
	c.Flags().Bool("clear", false, "Remove the owner's limits")
	c.Flags().Bool("json", false, "Print the owner's limits as a JSON object")
	addActorFlag(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		owner := args[0]
		flags := cmd.Flags()
		clear, _ := flags.GetBool("clear")
		setting := flags.Changed("rate") || flags.Changed("burst") || flags.Changed("quota")
		if clear && setting {
			return errors.New("--clear takes no --rate, --burst or --quota")
		}
		var lim *keystore.Limits
		if setting {
			var l keystore.Limits
			l.Rate, _ = flags.GetString("rate")
			l.Burst, _ = flags.GetInt("burst")
			l.Quota, _ = flags.GetString("quota")
			if flags.Changed("burst") && l.Burst <= 0 {
				return errors.New("--burst must be a positive whole number")
			}
			if l.IsZero() {
				return errors.New("--rate and --quota need a value; to remove the owner's limits use --clear")
			}
			if err := l.ValidateForOwner(); err != nil {
				return errors.New(flagError(err))
			}
			lim = &l
		}
		asJSON, _ := flags.GetBool("json")
		return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			changed := false
			if setting || clear {
				var err error
				if changed, err = (&keystore.Lifecycle{Store: s}).SetOwnerLimits(e.ctx, e.actor, owner, lim); err != nil {
					return err
				}
			}
			current, err := s.OwnerLimits(e.ctx, owner)
			if err != nil {
				return err
			}
			if asJSON {
				if current == nil {
					current = &keystore.Limits{}
				}
				return writeJSON(e.out, struct {
					Owner   string           `json:"owner"`
					Limits  *keystore.Limits `json:"limits"`
					Changed bool             `json:"changed"`
				}{owner, current, changed})
			}
			switch {
			case (setting || clear) && !changed:
				fmt.Fprintf(e.out, "Owner %s already had these limits: %s.\n", owner, dash(describeLimits(current)))
			case setting:
				fmt.Fprintf(e.out, "Owner %s's keys now share: %s.\n", owner, describeLimits(current))
			case clear:
				fmt.Fprintf(e.out, "Owner %s's keys share no limits any more.\n", owner)
			default:
				fmt.Fprintf(e.out, "Owner %s's keys share: %s.\n", owner, dash(describeLimits(current)))
			}
			return nil
		})
	}
	return c
}
