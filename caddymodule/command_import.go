package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

func importCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "import --file keys.csv|keys.jsonl|- [--format csv|jsonl] [--dry-run] [--actor A] [--json]",
		Short: "Imports a legacy system's existing keys, storing only their digests",
		Long: `Imports the keys a system before Keygate issued, so that its clients keep
working unchanged behind a gateway with the legacy_keys option. Keygate
stores each key's peppered digest under an id of its own, never the key.

The file is CSV with a header line, or JSON Lines (one object per line).
The columns (CSV) or members (JSON Lines) are:

  key          the key as clients send it (required): 16 to 256 visible
               ASCII characters, not starting like a Keygate key
  name         what the key is for (required)
  owner        the customer or account
  scopes       CSV: separated by commas or spaces; JSON: an array
  expires_at   RFC 3339 or YYYY-MM-DD (UTC); must be in the future
  not_before   RFC 3339 or YYYY-MM-DD (UTC)
  allow_cidrs  CSV: separated by commas or spaces; JSON: an array
  metadata.X   CSV: one column per metadata entry X; JSON: "metadata"
               is an object of strings

The whole file is checked first: if any line is bad, every bad line is
reported with its number and nothing is imported. A key already in the
store (imported before) is left as it is, so importing the same file again
changes nothing; change such a key with 'update'. Each imported key gets
an "import" event in the audit trail. 'rotate' replaces an imported key
with a Keygate key.

The file holds live keys: delete it once imported.`,
		Args: cobra.NoArgs,
	}
	c.Flags().String("file", "", "The file to import; - reads standard input (required)")
	c.Flags().String("format", "", "csv or jsonl (default: jsonl for .jsonl, .ndjson and .json files, else csv)")
	c.Flags().Bool("dry-run", false, "Check the file and say what would be imported, without importing")
	c.Flags().String("prefix", "", "The gateway's key prefix, which legacy keys must not start with (env KEYGATE_PREFIX; default kg)")
	c.Flags().Bool("json", false, "Print a JSON array (line, id, result) instead of a table")
	addActorFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		flags := cmd.Flags()
		path, _ := flags.GetString("file")
		if path == "" {
			return errors.New("--file is required (- for standard input)")
		}
		format, _ := flags.GetString("format")
		switch {
		case !flags.Changed("format"):
			format = keystore.ImportFormatOf(path)
		case format != keystore.ImportCSV && format != keystore.ImportJSONL:
			return fmt.Errorf("--format must be %s or %s, not %q", keystore.ImportCSV, keystore.ImportJSONL, format)
		}
		keyFormat, err := prefixFlag(cmd)
		if err != nil {
			return err
		}
		dryRun, _ := flags.GetBool("dry-run")
		asJSON, _ := flags.GetBool("json")
		var in io.Reader = cmd.InOrStdin()
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("--file: %w", err)
			}
			defer f.Close()
			in = f
		}
		return withStore(cmd, pepperRequired, createsStore, func(e *cliEnv, s keystore.Store, h *keystore.Hasher) error {
			lc := &keystore.Lifecycle{Store: s, Format: keyFormat, Hasher: h, OtherPeppers: e.peppers.Others()}
			done, err := lc.ImportFile(e.ctx, e.actor, in, format, dryRun)
			if err != nil {
				return err
			}
			return printImport(e, done, dryRun, asJSON)
		})
	}
	return c
}

// printImport reports what an import did with each line.
func printImport(e *cliEnv, done []keystore.Imported, dryRun, asJSON bool) error {
	added, differ := 0, 0
	type row struct {
		Line   int    `json:"line"`
		ID     string `json:"id"`
		Name   string `json:"name"`
		Owner  string `json:"owner,omitempty"`
		Result string `json:"result"`
	}
	rows := make([]row, 0, len(done))
	for _, d := range done {
		r := row{d.Line, d.Key.ID, d.Key.Name, d.Key.Owner, "imported"}
		switch {
		case d.Differs:
			r.Result, differ = "already there, other fields: left as it is", differ+1
		case d.Existed:
			r.Result = "already there"
		case dryRun:
			r.Result, r.ID, added = "would be imported", "-", added+1
		default:
			added++
		}
		rows = append(rows, r)
	}
	store := keystore.RedactDSN(e.dsn)
	if dryRun {
		fmt.Fprintf(e.errOut, "Dry run: %d of %d keys would be imported into %s; nothing was changed.\n", added, len(done), store)
	} else {
		fmt.Fprintf(e.errOut, "Imported %d of %d keys into %s; %d were there already.\n", added, len(done), store, len(done)-added)
	}
	if differ > 0 {
		fmt.Fprintf(e.errOut, "note: %d keys already there have other fields than the file's; import changes no existing key: use 'caddy api-key update'.\n", differ)
	}
	if asJSON {
		return writeJSON(e.out, rows)
	}
	tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tID\tNAME\tOWNER\tRESULT")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Line, r.ID, r.Name, dash(r.Owner), r.Result)
	}
	return tw.Flush()
}
