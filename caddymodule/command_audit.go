package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/internal/when"
	"github.com/keygate/keygate/keystore"
)

func auditCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit [--key ID] [--owner OWNER] [--since 24h|2027-01-31] [--json] | audit --verify [--head SEQ:HASH] [--json]",
		Short: "Lists the audit trail of key changes, or verifies its hash chain",
		Long: `Lists who changed which key how: every create and revoke is an event with
its time, actor, action, key id and owner, and the key's non-secret fields
before and after (--json shows them in full).

Events are hash-chained: each event's hash covers its content and the hash
of the event before it. --verify checks the whole chain from the first event
and names the first one that was altered, reordered or removed; it prints
the chain's head as SEQ:HASH. Removing the newest events leaves a shorter
chain that still holds together: --head SEQ:HASH, a head recorded earlier
(gateways log it at start, within a minute of a change and every hour, as
"audit chain head"), also
proves that no event up to it is missing.`,
		Args: cobra.NoArgs,
	}
	c.Flags().String("key", "", "Only this key's events (its id)")
	c.Flags().String("owner", "", "Only events of this owner's keys")
	c.Flags().String("since", "", "Only events since: a duration back from now (24h, 7d, 2w) or a time (RFC 3339, or YYYY-MM-DD in UTC)")
	c.Flags().Bool("verify", false, "Verify the whole chain instead of listing events; exits non-zero if it does not hold")
	c.Flags().String("head", "", "With --verify: a head recorded earlier (SEQ:HASH) that the chain must still hold")
	c.Flags().Bool("json", false, "Print JSON instead of text")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		flags := cmd.Flags()
		var f audit.Filter
		var err error
		if key, _ := flags.GetString("key"); flags.Changed("key") {
			if f.KeyID, err = keyIDArg(key); err != nil {
				return fmt.Errorf("--key: %v", err)
			}
		}
		f.Owner, _ = flags.GetString("owner")
		if since, _ := flags.GetString("since"); flags.Changed("since") {
			if f.Since, err = when.Parse("--since", since, time.Now(), -1); err != nil {
				return err
			}
		}
		verify, _ := flags.GetBool("verify")
		headFlag, _ := flags.GetString("head")
		asJSON, _ := flags.GetBool("json")
		var want *audit.Head
		switch {
		case verify && (flags.Changed("key") || flags.Changed("owner") || flags.Changed("since")):
			return errors.New("--verify checks the whole chain: it takes no --key, --owner or --since")
		case flags.Changed("head") && !verify:
			return errors.New("--head is a head to verify the chain against: use it with --verify")
		case flags.Changed("head"):
			h, err := audit.ParseHead(headFlag)
			if err != nil {
				return fmt.Errorf("--head: %v", err)
			}
			want = &h
		}
		return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			if verify {
				return verifyAudit(e, s, want, asJSON)
			}
			return listAudit(e, s, f, asJSON)
		})
	}
	return c
}

// verifyAudit checks the chain and reports its head, or the first event
// that does not hold (and fails).
func verifyAudit(e *cliEnv, s keystore.Store, want *audit.Head, asJSON bool) error {
	head, err := keystore.VerifyAudit(e.ctx, s, want)
	var broken *audit.BrokenError
	if err != nil && !errors.As(err, &broken) {
		return err
	}
	if asJSON {
		out := struct {
			OK       bool   `json:"ok"`
			Events   int64  `json:"events"`
			Head     string `json:"head,omitempty"`
			BrokenAt int64  `json:"broken_at,omitempty"`
			Reason   string `json:"reason,omitempty"`
			Store    string `json:"store"`
		}{OK: broken == nil, Store: keystore.RedactDSN(e.dsn)}
		if broken == nil {
			out.Events = head.Seq
			if head.Seq > 0 {
				out.Head = head.String()
			}
		} else {
			out.BrokenAt, out.Reason = broken.Seq, broken.Reason
		}
		if err := writeJSON(e.out, out); err != nil {
			return err
		}
		return err
	}
	if broken != nil {
		return fmt.Errorf("%w (in %s)", err, keystore.RedactDSN(e.dsn))
	}
	if head.Seq == 0 {
		fmt.Fprintf(e.out, "The audit trail of %s holds no events yet.\n", keystore.RedactDSN(e.dsn))
		return nil
	}
	fmt.Fprintf(e.out, "Audit chain of %s verified: %d events, head %s\n", keystore.RedactDSN(e.dsn), head.Seq, head)
	if want != nil {
		fmt.Fprintf(e.out, "It holds the head %s recorded earlier: no event up to it was removed.\n", want)
	}
	return nil
}

func listAudit(e *cliEnv, s keystore.Store, f audit.Filter, asJSON bool) error {
	var events []*audit.Event
	if err := s.Events(e.ctx, f, func(ev *audit.Event) error { events = append(events, ev); return nil }); err != nil {
		return err
	}
	if len(events) == 0 {
		fmt.Fprintf(e.errOut, "No audit events in %s%s.\n", keystore.RedactDSN(e.dsn), describeFilter(f))
	}
	if asJSON {
		out := make([]audit.Record, 0, len(events))
		for _, ev := range events {
			out = append(out, audit.RecordOf(ev))
		}
		return writeJSON(e.out, out)
	}
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tKEY\tOWNER\tCHANGED")
	for _, ev := range events {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.Seq, formatTime(ev.Time), printable(ev.Actor), printable(ev.Action),
			dash(printable(ev.KeyID)), dash(printable(ev.Owner)), dash(printable(changedFields(ev.Before, ev.After))))
	}
	return tw.Flush()
}

func describeFilter(f audit.Filter) string {
	var parts []string
	if f.KeyID != "" {
		parts = append(parts, "key "+f.KeyID)
	}
	if f.Owner != "" {
		parts = append(parts, "owner "+strconv.Quote(f.Owner))
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since "+formatTime(f.Since))
	}
	if len(parts) == 0 {
		return ""
	}
	return " for " + strings.Join(parts, ", ")
}

// changedFields names the fields of a key's record that differ between
// two states: what a revoke or an update changed. A new key has no
// before: it shows as "new key".
func changedFields(before, after string) string {
	if before == "" {
		return "new key"
	}
	var b, a map[string]json.RawMessage
	if json.Unmarshal([]byte(before), &b) != nil || json.Unmarshal([]byte(after), &a) != nil {
		return "?"
	}
	var changed []string
	for _, name := range slices.Sorted(maps.Keys(mergeKeys(a, b))) {
		if string(a[name]) != string(b[name]) {
			changed = append(changed, name)
		}
	}
	return strings.Join(changed, ",")
}

func mergeKeys(a, b map[string]json.RawMessage) map[string]json.RawMessage {
	m := maps.Clone(a)
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	maps.Copy(m, b)
	return m
}

// printable quotes text that holds anything but printable characters, so
// that a row edited by hand cannot move the cursor or forge lines.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
