package caddymodule

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

func updateCommand() *cobra.Command {
	c := &cobra.Command{
		Use: "update ID [--name N] [--owner O] [--scopes a,b] [--expires 30d|2027-01-31|… | --no-expiry] [--not-before 1h|2027-01-01|now] [--allow-cidr …|--no-allow-cidr] [--metadata k=v]... " +
			"[--rate 100/s [--burst N]] [--quota N/day|N/month] [--uses N [--refill day|month]] [--no-limits] [--actor A] [--json]",
		Short: "Changes a key's fields without changing its secret",
		Long: `Changes the fields given, keeps the others and the secret: clients go on
using the same key. --metadata k=v sets an entry, k= removes it. The limit
flags replace the key's own limits as a whole (--no-limits removes them).
Every gateway sees the change within the same bound as a revocation, and
the audit trail records it (action update). A revoked key cannot be
changed.`,
		Args: cobra.ExactArgs(1),
	}
	c.Flags().String("name", "", "What the key is for")
	c.Flags().String("owner", "", "Customer or account the key belongs to ('' for none)")
	c.Flags().StringSlice("scopes", nil, "Scopes the key grants, replacing the current ones ('' for none)")
	c.Flags().String("expires", "", "New expiry: a duration from now (2w, 30d, 12h) or a time (RFC 3339, or YYYY-MM-DD in UTC)")
	c.Flags().Bool("no-expiry", false, "Remove the key's expiry")
	c.Flags().String("not-before", "", "When the key starts to work: a duration from now (1h, 2d) or a time (RFC 3339, or YYYY-MM-DD in UTC); 'now' for at once")
	c.Flags().StringArray("metadata", nil, "Metadata entry to set as key=value, or to remove as key=; repeat for more")
	c.Flags().String("allow-cidr", "", "Networks the key may be used from, comma-separated, replacing the current ones")
	c.Flags().Bool("no-allow-cidr", false, "Let the key be used from any address")
	addLimitFlags(c)
	c.Flags().Bool("no-limits", false, "Remove the key's own limits")
	c.Flags().Bool("json", false, "Print the key as a JSON object")
	addActorFlag(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := keyIDArg(args[0])
		if err != nil {
			return err
		}
		ch, err := keyChangeFlags(cmd, time.Now())
		if err != nil {
			return err
		}
		asJSON, _ := cmd.Flags().GetBool("json")
		return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			k, changed, err := (&keystore.Lifecycle{Store: s}).Update(e.ctx, e.actor, id, ch)
			if err != nil {
				return noKey(e, id, err)
			}
			if asJSON {
				return writeJSON(e.out, keystore.ChangedKey{KeyStatus: keystore.WithStatus(k, time.Now()), Changed: changed})
			}
			if changed {
				fmt.Fprintf(e.out, "Updated key %s: %s.\n", k.ID, describe(k))
			} else {
				fmt.Fprintf(e.out, "Key %s already had these fields; nothing changed.\n", k.ID)
			}
			return nil
		})
	}
	return c
}

// keyChangeFlags reads update's flags.
func keyChangeFlags(cmd *cobra.Command, now time.Time) (keystore.KeyChange, error) {
	f := cmd.Flags()
	var ch keystore.KeyChange
	if f.Changed("name") {
		v, _ := f.GetString("name")
		ch.Name = &v
	}
	if f.Changed("owner") {
		v, _ := f.GetString("owner")
		ch.Owner = &v
	}
	if f.Changed("scopes") {
		raw, _ := f.GetStringSlice("scopes")
		scopes := []string{}
		for _, s := range raw {
			if s = strings.TrimSpace(s); s != "" {
				scopes = append(scopes, s)
			}
		}
		ch.Scopes = &scopes
	}
	noExpiry, _ := f.GetBool("no-expiry")
	switch {
	case noExpiry && f.Changed("expires"):
		return ch, errors.New("--expires and --no-expiry contradict each other")
	case noExpiry:
		ch.ExpiresAt = &time.Time{}
	case f.Changed("expires"):
		v, _ := f.GetString("expires")
		if strings.TrimSpace(v) == "" {
			return ch, errors.New("--expires needs a value; to remove the expiry use --no-expiry")
		}
		at, err := parseExpiry(v, now)
		if err != nil {
			return ch, err
		}
		ch.ExpiresAt = &at
	}
	if f.Changed("not-before") {
		v, _ := f.GetString("not-before")
		var at time.Time
		if v != "now" {
			if strings.TrimSpace(v) == "" {
				return ch, errors.New("--not-before needs a value ('now' lets the key work at once)")
			}
			var err error
			if at, err = parseNotBefore(v, now); err != nil {
				return ch, err
			}
		}
		ch.NotBefore = &at
	}
	noCIDR, _ := f.GetBool("no-allow-cidr")
	switch {
	case noCIDR && f.Changed("allow-cidr"):
		return ch, errors.New("--allow-cidr and --no-allow-cidr contradict each other")
	case noCIDR:
		ch.AllowCIDRs = &[]netip.Prefix{}
	case f.Changed("allow-cidr"):
		v, _ := f.GetString("allow-cidr")
		cidrs, err := keystore.ParseCIDRs(v)
		if err != nil {
			return ch, fmt.Errorf("--allow-cidr: %v", err)
		}
		if len(cidrs) == 0 {
			return ch, errors.New("--allow-cidr needs a value; to remove the allowlist use --no-allow-cidr")
		}
		ch.AllowCIDRs = &cidrs
	}
	if pairs, _ := f.GetStringArray("metadata"); len(pairs) > 0 {
		m, err := parseMetadata(pairs)
		if err != nil {
			return ch, err
		}
		ch.Metadata = m
	}
	limits, err := limitFlags(cmd)
	if err != nil {
		return ch, err
	}
	noLimits, _ := f.GetBool("no-limits")
	switch {
	case noLimits && limits != nil:
		return ch, errors.New("--no-limits takes no --rate, --burst, --quota, --uses or --refill")
	case noLimits:
		var none *keystore.Limits
		ch.Limits = &none
	case limits != nil:
		ch.Limits = &limits
	}
	if ch.IsZero() {
		return ch, errors.New("nothing to change: give at least one of --name, --owner, --scopes, --expires, --no-expiry, --not-before, --allow-cidr, --no-allow-cidr, --metadata, a limit flag or --no-limits")
	}
	return ch, nil
}

func deleteCommand() *cobra.Command {
	c := keyCommand("delete ID [--actor NAME] [--json]", "Deletes a key's record (its audit events stay)", "Print the deleted key as a JSON object",
		func(e *cliEnv, s keystore.Store, id string, asJSON bool) error {
			k, err := (&keystore.Lifecycle{Store: s}).Delete(e.ctx, e.actor, id)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(e.out, keystore.KeyStatus{Key: k, Status: "deleted"})
			}
			fmt.Fprintf(e.out, "Deleted key %s (%s). Its audit events stay; gateways refuse it like an unknown key.\n", k.ID, describe(k))
			return nil
		})
	addActorFlag(c)
	return c
}

func rotateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "rotate ID [--grace 24h] [--prefix P] [--actor A] [--json]",
		Short: "Issues a new key in place of one, which keeps working for a grace period",
		Long: `Issues a new key with the old one's name, owner, scopes, metadata, limits
and validity, prints it once (like create), and retires the old key: it
keeps working until --grace ends (default 24h; 0 retires it at once), then
is refused like a revoked key. The keys record each other (show: Replaces,
Replaced by); the audit trail gets a rotate and a create event.

The new key has the old key's prefix. An imported legacy key has none: its
replacement is a Keygate key with --prefix (or KEYGATE_PREFIX; default kg),
which a gateway must accept.`,
		Args: cobra.ExactArgs(1),
	}
	c.Flags().Duration("grace", 24*time.Hour, "How long the old key keeps working (0: not at all)")
	c.Flags().Bool("json", false, "Print a JSON object (id, key, replaces, …) instead of the key alone")
	c.Flags().String("prefix", "", "Prefix of the new key when the old one is an imported legacy key (env KEYGATE_PREFIX; default kg)")
	addActorFlag(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := keyIDArg(args[0])
		if err != nil {
			return err
		}
		grace, _ := cmd.Flags().GetDuration("grace")
		if grace < 0 || grace > keystore.MaxGrace {
			return fmt.Errorf("--grace must be 0 to %v", keystore.MaxGrace)
		}
		asJSON, _ := cmd.Flags().GetBool("json")
		format, err := prefixFlag(cmd)
		if err != nil {
			return err
		}
		return withStore(cmd, pepperRequired, existingOnly, func(e *cliEnv, s keystore.Store, h *keystore.Hasher) error {
			if k, err := s.Get(e.ctx, id); err == nil && k.IsLegacy() {
				if err := checkPrefix(e, s, format.Prefix()); err != nil {
					return err
				}
			}
			key, rec, old, err := (&keystore.Lifecycle{Store: s, Format: format, Hasher: h}).Rotate(e.ctx, e.actor, id, grace)
			if err != nil {
				return noKey(e, id, err)
			}
			if asJSON {
				return writeJSON(e.out, struct {
					*keystore.Key
					Secret      string    `json:"key"`
					OldRetireAt time.Time `json:"old_key_revoked_at"`
				}{rec, key, old.RevokedAt})
			}
			fmt.Fprintf(e.errOut, "Rotated key %s into %s (%s). The old key works until %s. The new key is shown only this once: store it now.\n",
				old.ID, rec.ID, describe(rec), formatTime(old.RevokedAt))
			fmt.Fprintln(e.out, key)
			return nil
		})
	}
	return c
}
