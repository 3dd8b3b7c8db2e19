package caddymodule

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/internal/when"
	"github.com/keygate/keygate/keystore"
)

func usageCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "usage [ID | --owner OWNER] [--since 24h|2027-01-31] [--by minute|hour|day] [--json]",
		Short: "Shows what keys did: requests by status class, bytes, latency",
		Long: `Shows the usage gateways recorded: one key's (ID), one owner's (--owner, all
of its keys together), or every key's, in buckets of a minute, an hour
(default) or a day (UTC), since a time (default: the last 24 hours).

Requests are counted by status class, Keygate's own refusals of a known key
(revoked, expired, missing scope) included; bytes are request and response
bodies; latency is the time from the key check to the end of the response.
Gateways write usage every flush_interval (default 10s), so the newest
seconds may not be there yet.`,
		Args: cobra.MaximumNArgs(1),
	}
	c.Flags().String("owner", "", "Usage of all of this owner's keys together")
	c.Flags().String("since", "24h", "Since: a duration back from now (24h, 7d, 2w) or a time (RFC 3339, or YYYY-MM-DD in UTC)")
	c.Flags().String("by", keystore.ByHour, "Bucket size: minute, hour or day")
	c.Flags().Bool("json", false, "Print a JSON array of buckets instead of a table")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		flags := cmd.Flags()
		var q keystore.UsageQuery
		var err error
		if len(args) == 1 {
			if q.KeyID, err = keyIDArg(args[0]); err != nil {
				return err
			}
		}
		q.Owner, _ = flags.GetString("owner")
		if q.KeyID != "" && flags.Changed("owner") {
			return errors.New("give a key id or --owner, not both")
		}
		since, _ := flags.GetString("since")
		if q.Since, err = when.Parse("--since", since, time.Now(), -1); err != nil {
			return err
		}
		q.By, _ = flags.GetString("by")
		if q.By != keystore.ByMinute && q.By != keystore.ByHour && q.By != keystore.ByDay {
			return fmt.Errorf("--by must be minute, hour or day, not %q", q.By)
		}
		asJSON, _ := flags.GetBool("json")
		return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			buckets, err := s.Usage(e.ctx, q)
			if err != nil {
				return err
			}
			if q.KeyID != "" && len(buckets) == 0 {
				if _, err := s.Get(e.ctx, q.KeyID); errors.Is(err, keystore.ErrNotFound) {
					return fmt.Errorf("no key with id %s in %s", q.KeyID, keystore.RedactDSN(e.dsn))
				}
			}
			if asJSON {
				out := make([]keystore.UsageReport, 0, len(buckets))
				for _, b := range buckets {
					out = append(out, b.Report())
				}
				return writeJSON(e.out, out)
			}
			if len(buckets) == 0 {
				fmt.Fprintf(e.errOut, "No usage in %s since %s.\n", keystore.RedactDSN(e.dsn), formatTime(q.Since))
				return nil
			}
			tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "START\tREQUESTS\t1XX\t2XX\t3XX\t4XX\t5XX\tBYTES IN\tBYTES OUT\tAVG LATENCY\t")
			var total keystore.UsageCounts
			for _, b := range buckets {
				printUsageRow(tw, formatTime(b.Start), b.UsageCounts)
				total.Add(&b.UsageCounts)
			}
			printUsageRow(tw, "total", total)
			return tw.Flush()
		})
	}
	return c
}

func printUsageRow(tw *tabwriter.Writer, label string, c keystore.UsageCounts) {
	fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", label, c.Requests(),
		c.Status[keystore.Class1xx], c.Status[keystore.Class2xx], c.Status[keystore.Class3xx], c.Status[keystore.Class4xx], c.Status[keystore.Class5xx],
		c.BytesIn, c.BytesOut, c.AvgLatency().Round(10*time.Microsecond))
}
