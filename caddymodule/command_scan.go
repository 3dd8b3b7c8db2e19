package caddymodule

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

// maxScanFile bounds the files scan reads whole.
const maxScanFile = 256 << 20

// foundKey is one key scan found, as --json prints it: never the key.
type foundKey struct {
	Location string `json:"location"` // file:line
	ID       string `json:"id"`
	Prefix   string `json:"prefix"`
	// Status is the key's in the store (active, revoked, …), "unknown"
	// when the store has no such key, "unchecked" with --offline.
	Status  string `json:"status"`
	Revoked bool   `json:"revoked_now,omitempty"`
	key     keystore.ParsedKey
}

func scanCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "scan [PATH…|-] [--revoke] [--offline] [--actor A] [--json]",
		Short: "Finds Keygate keys in files and says whether each still works",
		Long: `Finds every well-formed Keygate key, of any prefix, in files, directories
(recursively) or standard input (- or no path): code, logs, tickets, chat
exports. Keys are recognised by their layout and checksum, so random text
is practically never taken for one. Each key is reported by file:line, id
and prefix, never printing its secret, with its status in the key store
(active, revoked, expired, not_yet_valid, or unknown: not a key of this
store). With --revoke, the active ones are revoked (the audit trail records
the actor "scan" unless --actor says otherwise); --offline reports without
opening a store.

The exit status is 1 when an active key was found and left active, so the
command can guard a repository or a log export in CI. docs/leaked-keys.md
gives the pattern and a gitleaks rule.`,
	}
	c.Flags().Bool("revoke", false, "Revoke every active key found")
	c.Flags().Bool("offline", false, "Only report the keys found; do not open a key store")
	c.Flags().Bool("json", false, "Print a JSON array (location, id, prefix, status) instead of a table")
	addActorFlag(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		revoke, _ := cmd.Flags().GetBool("revoke")
		offline, _ := cmd.Flags().GetBool("offline")
		asJSON, _ := cmd.Flags().GetBool("json")
		if revoke && offline {
			return errors.New("--revoke needs the key store: leave out --offline")
		}
		found, err := scanPaths(cmd.InOrStdin(), cmd.ErrOrStderr(), args)
		if err != nil {
			return err
		}
		report := func(out, errOut io.Writer) error {
			active := 0
			for _, f := range found {
				if f.Status == keystore.StatusActive && !f.Revoked {
					active++
				}
			}
			if err := printFound(out, found, asJSON); err != nil {
				return err
			}
			fmt.Fprintf(errOut, "%d keys found.\n", len(found))
			if active > 0 {
				return fmt.Errorf("%d of them are active: revoke them (--revoke, or 'caddy api-key revoke ID') and give their owners new keys", active)
			}
			return nil
		}
		if offline || len(found) == 0 {
			for i := range found {
				found[i].Status = "unchecked"
			}
			return report(cmd.OutOrStdout(), cmd.ErrOrStderr())
		}
		return withStore(cmd, pepperRequired, existingOnly, func(e *cliEnv, s keystore.Store, h *keystore.Hasher) error {
			if !cmd.Flags().Changed("actor") {
				e.actor = "scan"
			}
			now := time.Now()
			lc := &keystore.Lifecycle{Store: s}
			done := map[string]bool{} // ids revoked by this run
			for i := range found {
				f := &found[i]
				k, _, err := e.peppers.Lookup(e.ctx, s, f.key)
				if errors.Is(err, keystore.ErrNotFound) {
					f.Status = "unknown"
					continue
				}
				if err != nil {
					return err
				}
				f.Status = k.Status(now)
				if revoke && (f.Status == keystore.StatusActive || f.Status == keystore.StatusNotYetValid) {
					if !done[k.ID] {
						if _, _, err := lc.Revoke(e.ctx, e.actor, k.ID); err != nil {
							return fmt.Errorf("revoking key %s: %w", k.ID, err)
						}
						done[k.ID] = true
					}
					f.Revoked = true
				}
			}
			return report(e.out, e.errOut)
		})
	}
	return c
}

// scanPaths finds the keys in each path (a file, a directory walked
// recursively, or - for stdin; none means stdin).
func scanPaths(stdin io.Reader, errOut io.Writer, paths []string) ([]foundKey, error) {
	if len(paths) == 0 {
		paths = []string{"-"}
	}
	var found []foundKey
	add := func(name string, b []byte) {
		for _, k := range keystore.FindKeys(b) {
			found = append(found, foundKey{Location: fmt.Sprintf("%s:%d", name, k.Line), ID: k.Key.ID, Prefix: k.Prefix, key: k.Key})
		}
	}
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(io.LimitReader(stdin, maxScanFile+1))
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			if len(b) > maxScanFile {
				return nil, fmt.Errorf("standard input is larger than %d MiB: split it", maxScanFile>>20)
			}
			add("-", b)
			continue
		}
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if path == p {
					return err // a path named on the command line must exist
				}
				fmt.Fprintf(errOut, "warning: skipping %s: %v\n", path, err)
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				fmt.Fprintf(errOut, "warning: skipping %s: %v\n", path, err)
				return nil
			}
			if info.Size() > maxScanFile {
				fmt.Fprintf(errOut, "warning: skipping %s: larger than %d MiB\n", path, maxScanFile>>20)
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				fmt.Fprintf(errOut, "warning: skipping %s: %v\n", path, err)
				return nil
			}
			add(path, b)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}

func printFound(w io.Writer, found []foundKey, asJSON bool) error {
	if asJSON {
		if found == nil {
			found = []foundKey{}
		}
		return writeJSON(w, found)
	}
	if len(found) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOCATION\tID\tPREFIX\tSTATUS")
	for _, f := range found {
		status := f.Status
		if f.Revoked {
			status = "revoked now"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Location, f.ID, f.Prefix, status)
	}
	return tw.Flush()
}
