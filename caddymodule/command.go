package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/keygate/keygate/internal/when"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/postgres"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "api-key",
		Usage: "<create|import|list|show|update|rotate|revoke|delete|owner|scan|audit|usage|signing-key|migrate|reset-pepper> [flags]",
		Short: "Manages Keygate API keys",
		Long: `
Creates, imports, lists, shows, updates, rotates, revokes and deletes the
API keys that the api_key handler accepts, shows the audit trail of those changes and the keys' usage, and
migrates the key store's schema.

Every subcommand uses the same key store as the api_key directive: the
embedded SQLite store under Caddy's data directory unless --database (or
KEYGATE_DATABASE) names another.

Creating a key needs the gateway's pepper, given one way only:
--pepper-file PATH or KEYGATE_PEPPER_FILE (a file only its owner can read),
KEYGATE_PEPPER, or --pepper, which like the directive accepts placeholders
({env.NAME}, {file./path}). With the embedded store and no pepper, the
pepper file beside the database is used (and created if missing). A pepper
is at least 32 random bytes, hex or base64 encoded: openssl rand -hex 32.

Other users can read command lines in the process list: keep secrets out
of them. Use the pepper file or environment variables above rather than a
literal --pepper, and KEYGATE_DATABASE rather than a --database holding a
password (or leave the password out: PGPASSWORD and ~/.pgpass are read).

A new key is printed exactly once. Keygate stores only its HMAC digest; a
lost key cannot be recovered, only revoked and replaced.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.PersistentFlags().String("database", "", "Key store DSN: postgres://… or sqlite:PATH (env KEYGATE_DATABASE; default: the embedded store); "+
				"a password here is visible in the process list")
			cmd.PersistentFlags().String("pepper", "", "Pepper the gateway uses; placeholders allowed (env KEYGATE_PEPPER); "+
				"a literal value is visible in the process list, prefer --pepper-file")
			cmd.PersistentFlags().String("pepper-file", "", "File holding the pepper, readable by its owner only (env KEYGATE_PEPPER_FILE)")
			cmd.PersistentFlags().StringArray("previous-pepper-file", nil, "In a pepper rotation: file holding a previous pepper (repeat for more); keys made with it still verify")
			cmd.PersistentFlags().String("next-pepper-file", "", "In a pepper rotation: file holding the next pepper, registered in the store before gateways use it")
			cmd.PersistentFlags().Duration("timeout", 30*time.Second, "How long to wait for the key store")
			cmd.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("unknown subcommand %q; see 'caddy api-key --help'", args[0])
				}
				return cmd.Help()
			}
			cmd.AddCommand(createCommand(), importCommand(), listCommand(), showCommand(), updateCommand(), rotateCommand(), revokeCommand(), deleteCommand(), ownerCommand(), scanCommand(), auditCommand(), usageCommand(), migrateCommand(), resetPepperCommand(), pepperStatusCommand(), signingKeyCommand())
		},
	})
}

// cliEnv is what every subcommand resolves from flags and environment.
type cliEnv struct {
	dsn        string
	pepper     string           // --pepper, placeholders not yet replaced
	pepperFile string           // --pepper-file
	previous   []string         // --previous-pepper-file
	next       string           // --next-pepper-file
	peppers    keystore.Peppers // once open resolved the pepper
	actor      string           // who makes the change, for commands that change keys
	newStore   bool             // the embedded store did not exist before this command
	timeout    time.Duration
	ctx        context.Context
	cancel     context.CancelFunc
	out        io.Writer
	errOut     io.Writer
}

// Warnings about secrets on the command line, which every user of the
// machine can read in the process list.
const (
	pepperFlagWarning = "warning: --pepper on the command line is visible to other users in the process list; " +
		"use --pepper-file, KEYGATE_PEPPER_FILE or KEYGATE_PEPPER"
	databasePasswordWarning = "warning: --database on the command line contains a password, which is visible to other users " +
		"in the process list; use KEYGATE_DATABASE, or leave the password out and let PGPASSWORD or ~/.pgpass supply it"
)

// placeholderOnly matches a setting that is one {env.…} or {file.…}
// placeholder: the command line then shows where the secret is, not the
// secret.
var placeholderOnly = regexp.MustCompile(`^\{(env|file)\.[^{}]+\}$`)

func newCLIEnv(cmd *cobra.Command) (*cliEnv, error) {
	flags := cmd.Flags()
	errOut := cmd.ErrOrStderr()
	database, _ := flags.GetString("database")
	if database != "" && keystore.RedactDSN(database) != database {
		fmt.Fprintln(errOut, databasePasswordWarning)
	}
	pepper, _ := flags.GetString("pepper")
	if pepper != "" && !placeholderOnly.MatchString(strings.TrimSpace(pepper)) {
		fmt.Fprintln(errOut, pepperFlagWarning)
	}
	pepperFile, _ := flags.GetString("pepper-file")
	if pepper != "" && pepperFile != "" {
		return nil, errors.New("--pepper and --pepper-file are both set: give the pepper one way only")
	}
	previous, _ := flags.GetStringArray("previous-pepper-file")
	next, _ := flags.GetString("next-pepper-file")
	timeout, _ := flags.GetDuration("timeout")
	if timeout <= 0 {
		return nil, errors.New("--timeout must be positive")
	}
	dsn, err := storeLocation(database, "--database")
	if err != nil {
		return nil, err
	}
	var actor string
	if flags.Lookup("actor") != nil {
		if actor, err = actorOf(cmd); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return &cliEnv{dsn: dsn, pepper: pepper, pepperFile: pepperFile, previous: previous, next: next, actor: actor, timeout: timeout,
		ctx: ctx, cancel: cancel, out: cmd.OutOrStdout(), errOut: errOut}, nil
}

// pepperUse is what a command does with the pepper.
type pepperUse int

const (
	pepperIfGiven  pepperUse = iota // checked against the store if one is given
	pepperRequired                  // resolved (or generated) and checked: keys are made
	pepperIgnored                   // not read at all (reset-pepper)
)

// open opens the store with opts and, as use says, resolves the pepper
// and has the store check it, so a wrong pepper fails before a key is
// made.
func (e *cliEnv) open(use pepperUse, opts keystore.Options) (keystore.Store, *keystore.Hasher, error) {
	var hasher *keystore.Hasher
	given := e.pepper != "" || e.pepperFile != "" || os.Getenv(envPepper) != "" || os.Getenv(envPepperFile) != ""
	if use == pepperRequired || use == pepperIfGiven && given {
		pepper, err := storePepper(e.pepper, "--pepper", e.pepperFile, "--pepper-file", e.dsn, true)
		if err != nil {
			return nil, nil, err
		}
		if e.peppers, err = e.rotation(pepper); err != nil {
			return nil, nil, err // "pepper is …"
		}
		hasher = e.peppers.Current
		e.peppers.SetOptions(&opts)
	} else if len(e.previous) > 0 || e.next != "" {
		return nil, nil, errors.New("--previous-pepper-file and --next-pepper-file need the pepper they rotate from or to: give it too")
	}
	s, err := keystore.Open(e.ctx, e.dsn, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("opening key store %s: %w", keystore.RedactDSN(e.dsn), e.explain(err))
	}
	return s, hasher, nil
}

// rotation reads the files of the other peppers of a rotation and builds
// the hashers around the pepper.
func (e *cliEnv) rotation(pepper []byte) (keystore.Peppers, error) {
	var previous [][]byte
	for _, f := range e.previous {
		p, err := keystore.ReadPepperFile(f)
		if err != nil {
			return keystore.Peppers{}, fmt.Errorf("--previous-pepper-file: %w", err)
		}
		previous = append(previous, p)
	}
	var next []byte
	if e.next != "" {
		var err error
		if next, err = keystore.ReadPepperFile(e.next); err != nil {
			return keystore.Peppers{}, fmt.Errorf("--next-pepper-file: %w", err)
		}
	}
	return keystore.NewPeppers(pepper, previous, next)
}

// Store options of the commands: create (and migrate) may make a new
// store; the others only read or change keys in an existing one, and
// leave migrating to `migrate` or a gateway.
var (
	createsStore = keystore.Options{}
	existingOnly = keystore.Options{MustExist: true, Schema: keystore.SchemaRequire}
)

// withStore runs f with an open store and closes everything afterwards.
func withStore(cmd *cobra.Command, use pepperUse, opts keystore.Options, f func(e *cliEnv, s keystore.Store, h *keystore.Hasher) error) error {
	e, err := newCLIEnv(cmd)
	if err != nil {
		return err
	}
	defer e.cancel()
	e.newStore, _ = newEmbeddedStore(e.dsn)
	s, h, err := e.open(use, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	if e.newStore {
		// A mistyped path makes a new store that no key is in: say so.
		fmt.Fprintf(e.errOut, "Created a new, empty key store at %s.\n", keystore.RedactDSN(e.dsn))
	}
	if warning := keystore.CheckStoreDir(e.dsn); warning != "" {
		fmt.Fprintln(e.errOut, "warning: "+warning)
	}
	return e.explain(f(e, s, h))
}

// explain adds what a user can do to an error caused by the command's
// own deadline.
func (e *cliEnv) explain(err error) error {
	if err != nil && e.ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (no answer from the key store within --timeout %v)", err, e.timeout)
	}
	return err
}

func createCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "create --name NAME [--owner OWNER] [--scopes a,b] [--expires 30d|2w|12h|2027-01-31|2027-01-31T12:00:00Z] [--not-before 1h|2027-01-01] [--allow-cidr 203.0.113.0/24,…] [--metadata k=v]... [--rate 100/s [--burst N]] [--quota 10000/month] [--uses N [--refill day|month]] [--prefix P] [--json]",
		Short: "Creates a key and prints it once",
		Args:  cobra.NoArgs,
	}
	c.Flags().String("name", "", "What the key is for (required)")
	c.Flags().String("owner", "", "Customer or account the key belongs to")
	c.Flags().StringSlice("scopes", nil, "Scopes the key grants, comma-separated or repeated")
	c.Flags().String("expires", "", "Expiry: a duration from now (2w, 30d, 12h) or a time (RFC 3339, or YYYY-MM-DD in UTC)")
	c.Flags().String("not-before", "", "When the key starts to work: a duration from now (1h, 2d) or a time (RFC 3339, or YYYY-MM-DD in UTC)")
	c.Flags().String("allow-cidr", "", "Networks the key may be used from, comma-separated: 203.0.113.0/24,2001:db8::/32")
	c.Flags().StringArray("metadata", nil, "Metadata as key=value; repeat for more")
	c.Flags().String("prefix", "", "Key prefix; must match the gateway's (env KEYGATE_PREFIX; default kg)")
	c.Flags().Bool("json", false, "Print a JSON object instead of text")
	addLimitFlags(c)
	addActorFlag(c)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		flags := cmd.Flags()
		var p keystore.NewKeyParams
		var err error
		if p.Limits, err = limitFlags(cmd); err != nil {
			return err
		}
		p.Name, _ = flags.GetString("name")
		if !flags.Changed("name") {
			return errors.New("--name is required")
		}
		p.Owner, _ = flags.GetString("owner")
		scopes, _ := flags.GetStringSlice("scopes")
		for _, s := range scopes {
			// "a, b" is a list of two, as it reads.
			if s = strings.TrimSpace(s); s != "" {
				p.Scopes = append(p.Scopes, s)
			}
		}
		expires, _ := flags.GetString("expires")
		if p.ExpiresAt, err = parseExpiry(expires, time.Now()); err != nil {
			return err
		}
		cidrs, _ := flags.GetString("allow-cidr")
		if p.AllowCIDRs, err = keystore.ParseCIDRs(cidrs); err != nil {
			return fmt.Errorf("--allow-cidr: %v", err)
		}
		notBefore, _ := flags.GetString("not-before")
		if p.NotBefore, err = parseNotBefore(notBefore, time.Now()); err != nil {
			return err
		}
		meta, _ := flags.GetStringArray("metadata")
		if p.Metadata, err = parseMetadata(meta); err != nil {
			return err
		}
		format, err := prefixFlag(cmd)
		if err != nil {
			return err
		}
		if err := p.Validate(time.Now()); err != nil {
			return err
		}
		asJSON, _ := flags.GetBool("json")
		return withStore(cmd, pepperRequired, createsStore, func(e *cliEnv, s keystore.Store, h *keystore.Hasher) error {
			if err := checkPrefix(e, s, format.Prefix()); err != nil {
				return err
			}
			lc := &keystore.Lifecycle{Store: s, Format: format, Hasher: h}
			key, rec, err := lc.Create(e.ctx, e.actor, p)
			if err != nil {
				return fmt.Errorf("creating key: %w", err)
			}
			if asJSON {
				return writeJSON(e.out, struct {
					*keystore.Key
					Secret string `json:"key"`
					Store  string `json:"store"`
				}{rec, key, keystore.RedactDSN(e.dsn)})
			}
			fmt.Fprintf(e.errOut, "Created key %s (%s) in %s. It is shown only this once: store it now.\n",
				rec.ID, describe(rec), keystore.RedactDSN(e.dsn))
			fmt.Fprintln(e.out, key)
			return nil
		})
	}
	return c
}

func listCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "list [--owner OWNER] [--status S[,S…] | --all] [--limit N [--after ID]] [--json]",
		Short: "Lists keys (those that work or will, unless --status or --all)",
		Long: `Lists keys in the order they were created. Without --status or --all it
lists the keys that work or will: active and not_yet_valid ones. --status
selects keys by their status now (active, not_yet_valid, revoked, expired;
a key in a rotation's grace is active until the grace ends); --all lists
every key.

--limit N lists at most N keys. When a page is full, stderr says how to get
the next one (next page: --after ID): --after ID lists the keys created after
the key with that id, the last of the previous page.`,
		Args: cobra.NoArgs,
	}
	c.Flags().String("owner", "", "Only this owner's keys")
	c.Flags().StringSlice("status", nil, "Only keys with these statuses, comma-separated or repeated: "+strings.Join(keystore.AllStatuses(), ", "))
	c.Flags().Bool("all", false, "Keys of every status (revoked and expired included)")
	c.Flags().Int("limit", 0, "At most this many keys (0: all)")
	c.Flags().String("after", "", "Only keys after this one (its id), the last of the previous page")
	c.Flags().Bool("json", false, "Print a JSON array instead of a table")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		flags := cmd.Flags()
		f, err := listFilter(cmd)
		if err != nil {
			return err
		}
		all, _ := flags.GetBool("all")
		defaults := !all && !flags.Changed("status")
		asJSON, _ := flags.GetBool("json")
		return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			keys, err := s.List(e.ctx, f)
			if errors.Is(err, keystore.ErrNotFound) && f.After != "" {
				return fmt.Errorf("--after %s: no key with that id in %s (deleted since the page before?)", f.After, keystore.RedactDSN(e.dsn))
			}
			if err != nil {
				return err
			}
			if len(keys) == 0 {
				if err := explainEmptyList(e, s, f, defaults); err != nil {
					return err
				}
			}
			if f.Limit > 0 && len(keys) == f.Limit {
				// stdout stays the page alone (a table, or a JSON array).
				fmt.Fprintf(e.errOut, "next page: --after %s\n", keys[len(keys)-1].ID)
			}
			if asJSON {
				return writeJSON(e.out, keystore.WithStatuses(keys, time.Now()))
			}
			tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tOWNER\tSTATUS\tCREATED\tEXPIRES\tSCOPES\tHINT")
			now := time.Now()
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, dash(k.Owner), k.Status(now),
					k.CreatedAt.Format(time.RFC3339), dash(formatTime(k.ExpiresAt)), dash(strings.Join(k.Scopes, ",")), k.Hint)
			}
			return tw.Flush()
		})
	}
	return c
}

// listFilter reads list's flags, checked before the store is opened.
func listFilter(cmd *cobra.Command) (keystore.ListFilter, error) {
	flags := cmd.Flags()
	var f keystore.ListFilter
	f.Owner, _ = flags.GetString("owner")
	all, _ := flags.GetBool("all")
	statuses, _ := flags.GetStringSlice("status")
	switch {
	case all && flags.Changed("status"):
		return f, errors.New("--all lists keys of every status: give it or --status, not both")
	case all:
		f.Statuses = nil // every status
	case flags.Changed("status"):
		for _, st := range statuses {
			// "revoked, expired" is a list of two, as it reads.
			if st = strings.TrimSpace(st); st != "" {
				f.Statuses = append(f.Statuses, st)
			}
		}
		if len(f.Statuses) == 0 {
			return f, fmt.Errorf("--status needs one or more of: %s", strings.Join(keystore.AllStatuses(), ", "))
		}
	default:
		f.Statuses = keystore.WorkingStatuses()
	}
	f.Limit, _ = flags.GetInt("limit")
	if f.Limit < 0 {
		return f, errors.New("--limit must not be negative")
	}
	if after, _ := flags.GetString("after"); flags.Changed("after") {
		id, err := keyIDArg(after)
		if err != nil {
			return f, fmt.Errorf("--after: %v", err)
		}
		f.After = id
	}
	if err := f.Validate(); err != nil {
		return f, fmt.Errorf("--status: %v", err)
	}
	return f, nil
}

// explainEmptyList says on stderr why list printed no key: keys made as
// another user land in another data directory, so it says where it
// looked, and what other statuses would add.
func explainEmptyList(e *cliEnv, s keystore.Store, f keystore.ListFilter, defaults bool) error {
	store := keystore.RedactDSN(e.dsn)
	if f.After != "" {
		fmt.Fprintf(e.errOut, "No more keys after %s in %s.\n", f.After, store)
		return nil
	}
	others := 0
	if len(f.Statuses) > 0 {
		every, err := s.List(e.ctx, keystore.ListFilter{Owner: f.Owner})
		if err != nil {
			return err
		}
		others = len(every)
	}
	switch {
	case others > 0 && defaults:
		fmt.Fprintf(e.errOut, "No active keys in %s (%d revoked or expired: --all shows them).\n", store, others)
	case others > 0:
		fmt.Fprintf(e.errOut, "No %s keys in %s (%d with another status: --all shows them).\n",
			strings.Join(f.Statuses, " or "), store, others)
	default:
		fmt.Fprintf(e.errOut, "No keys in %s.\n", store)
	}
	return nil
}

func showCommand() *cobra.Command {
	return keyCommand("show ID [--json]", "Shows one key", "Print a JSON object instead of text",
		func(e *cliEnv, s keystore.Store, id string, asJSON bool) error {
			k, err := s.Get(e.ctx, id)
			if err != nil {
				return err
			}
			// Quota and uses as the store has counted them (gateways
			// write their counts every second).
			d, err := keystore.Detail(e.ctx, s, k, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(e.out, d)
			}
			printKey(e.out, k, d.LastUsedAt, d.Spent)
			return nil
		})
}

func revokeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "revoke ID | --owner OWNER [--actor NAME] [--json]",
		Short: "Revokes a key, or every key of an owner",
		Long: `Revokes the key with id ID, or with --owner every key of that owner that is
not revoked yet (keys in a rotation's grace included: their grace ends now),
all in one transaction with an audit event for each key. Every gateway
refuses the revoked keys within the bound of a revocation. Revoking what is
revoked already changes nothing and is not an error.`,
		Args: cobra.MaximumNArgs(1),
	}
	c.Flags().String("owner", "", "Revoke every key of this owner that is not revoked yet")
	c.Flags().Bool("json", false, "Print the revoked key as a JSON object (with --owner: an array of the keys it revoked)")
	addActorFlag(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		asJSON, _ := cmd.Flags().GetBool("json")
		owner, _ := cmd.Flags().GetString("owner")
		byOwner := cmd.Flags().Changed("owner")
		switch {
		case byOwner && len(args) > 0:
			return errors.New("give a key id or --owner, not both")
		case !byOwner && len(args) == 0:
			return errors.New("name what to revoke: a key id, or --owner OWNER for all of an owner's keys")
		case byOwner:
			return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
				return revokeOwner(e, s, owner, asJSON)
			})
		}
		id, err := keyIDArg(args[0])
		if err != nil {
			return err
		}
		return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			return noKey(e, id, revokeKey(e, s, id, asJSON))
		})
	}
	return c
}

func revokeKey(e *cliEnv, s keystore.Store, id string, asJSON bool) error {
	k, changed, err := (&keystore.Lifecycle{Store: s}).Revoke(e.ctx, e.actor, id)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(e.out, keystore.ChangedKey{KeyStatus: keystore.WithStatus(k, time.Now()), Changed: changed})
	}
	if changed {
		fmt.Fprintf(e.out, "Revoked key %s at %s.\n", k.ID, formatTime(k.RevokedAt))
	} else {
		fmt.Fprintf(e.out, "Key %s was already revoked at %s.\n", k.ID, formatTime(k.RevokedAt))
	}
	return nil
}

func revokeOwner(e *cliEnv, s keystore.Store, owner string, asJSON bool) error {
	keys, err := (&keystore.Lifecycle{Store: s}).RevokeOwner(e.ctx, e.actor, owner)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		// No key to revoke: say so plainly if the owner has none at all,
		// which is most likely a misspelled owner.
		any, err := s.List(e.ctx, keystore.ListFilter{Owner: owner, Limit: 1})
		if err != nil {
			return err
		}
		if len(any) == 0 {
			return fmt.Errorf("no key of owner %q in %s; owners are matched exactly, case included (caddy api-key list shows them)",
				owner, keystore.RedactDSN(e.dsn))
		}
	}
	if asJSON {
		return writeJSON(e.out, keystore.WithStatuses(keys, time.Now()))
	}
	if len(keys) == 0 {
		fmt.Fprintf(e.out, "Owner %s has no key that is not revoked already in %s; nothing revoked.\n", owner, keystore.RedactDSN(e.dsn))
		return nil
	}
	for _, k := range keys {
		fmt.Fprintf(e.out, "Revoked key %s (%q) at %s.\n", k.ID, k.Name, formatTime(k.RevokedAt))
	}
	noun := "keys"
	if len(keys) == 1 {
		noun = "key"
	}
	fmt.Fprintf(e.out, "Revoked %d %s of owner %s.\n", len(keys), noun, owner)
	return nil
}

// addActorFlag adds --actor to a command that changes keys.
func addActorFlag(c *cobra.Command) {
	c.Flags().String("actor", "", "Who makes the change, as recorded in the audit trail (default: cli:<your OS user name>)")
}

// actorOf returns the actor a change is recorded with: --actor, else
// "cli:" and the OS user running the command.
func actorOf(cmd *cobra.Command) (string, error) {
	actor, _ := cmd.Flags().GetString("actor")
	if cmd.Flags().Changed("actor") {
		if err := keystore.ValidateActor(actor); err != nil {
			return "", fmt.Errorf("--actor: %v", err)
		}
		return actor, nil
	}
	name := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	} else if env := os.Getenv("USER"); env != "" {
		name = env
	}
	actor = "cli:" + name
	if keystore.ValidateActor(actor) != nil {
		return "", errors.New("your OS user name cannot be recorded as the actor of this change: name one with --actor")
	}
	return actor, nil
}

// keyCommand is a subcommand that acts on one key named by its id: the id
// is checked before the store is opened, and an unknown id is reported as
// such.
func keyCommand(use, short, jsonHelp string, run func(e *cliEnv, s keystore.Store, id string, asJSON bool) error) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1)}
	c.Flags().Bool("json", false, jsonHelp)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := keyIDArg(args[0])
		if err != nil {
			return err
		}
		asJSON, _ := cmd.Flags().GetBool("json")
		return withStore(cmd, pepperIfGiven, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			return noKey(e, id, run(e, s, id, asJSON))
		})
	}
	return c
}

func migrateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate [--dry-run] [--prefix P] [--print-grants [--runtime-role R] [--management-role M] [--owner-role O]]",
		Short: "Applies pending key store schema migrations",
		Long: `Applies pending schema migrations, creating the key store if there is none
yet, and says which it applied; --dry-run only lists them. With --prefix
(or KEYGATE_PREFIX) it also records that gateways accept keys with that
prefix, which gateways running as a role that may not write keygate_meta
cannot record themselves.

Gateways migrate the store when they start, and so does 'caddy api-key
create'. The other commands do not: they refuse a store whose schema is
older than this build, and ask for this command.

--print-grants prints, and does not run, the PostgreSQL statements that
create three roles and grant each what it needs: the runtime role
gateways connect as (read keys, write usage), the management role of the
CLI and admin API, and the owner, who runs migrations (default: whoever
ran them). Run them as the owner after migrating, and again after each
upgrade.`,
		Args: cobra.NoArgs,
	}
	c.Flags().Bool("dry-run", false, "List the migrations that would be applied, apply none")
	c.Flags().String("prefix", "", "Record that gateways accept keys with this prefix (default: $"+envPrefix+", else none)")
	c.Flags().Bool("print-grants", false, "Print the PostgreSQL roles and grants of a least-privilege deployment; run nothing")
	c.Flags().String("runtime-role", postgres.DefaultRoles.Runtime, "With --print-grants: the role gateways connect as")
	c.Flags().String("management-role", postgres.DefaultRoles.Management, "With --print-grants: the role of the CLI and the admin API")
	c.Flags().String("owner-role", "", "With --print-grants: the role that owns the tables and runs migrations (default: whoever ran them)")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if printGrants, _ := cmd.Flags().GetBool("print-grants"); printGrants {
			var r postgres.Roles
			r.Runtime, _ = cmd.Flags().GetString("runtime-role")
			r.Management, _ = cmd.Flags().GetString("management-role")
			r.Owner, _ = cmd.Flags().GetString("owner-role")
			sql, err := postgres.Grants(r)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), sql)
			return err
		}
		dryRun, _ := cmd.Flags().GetBool("dry-run")
		if dryRun {
			e, err := newCLIEnv(cmd)
			if err != nil {
				return err
			}
			defer e.cancel()
			if missing, _ := newEmbeddedStore(e.dsn); missing {
				names, err := keystore.MigrationNames(e.dsn)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.out, "Would create %s and apply: %s\n", keystore.RedactDSN(e.dsn), strings.Join(names, ", "))
				return nil
			}
		}
		opts := keystore.Options{Schema: keystore.SchemaAsIs, MustExist: dryRun}
		return withStore(cmd, pepperIfGiven, opts, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			store := keystore.RedactDSN(e.dsn)
			if dryRun {
				names, err := s.Pending(e.ctx)
				if err != nil {
					return err
				}
				if len(names) == 0 {
					fmt.Fprintf(e.out, "Key store %s is up to date; nothing to apply.\n", store)
					return nil
				}
				fmt.Fprintf(e.out, "Would apply to %s: %s\n", store, strings.Join(names, ", "))
				return nil
			}
			names, err := s.Pending(e.ctx)
			if err != nil {
				return err
			}
			if _, err := s.Migrate(e.ctx); err != nil {
				return err
			}
			v, err := s.SchemaVersion(e.ctx)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("prefix") || os.Getenv(envPrefix) != "" {
				format, err := prefixFlag(cmd)
				if err != nil {
					return err
				}
				if err := s.AcceptPrefix(e.ctx, format.Prefix()); err != nil {
					return err
				}
				fmt.Fprintf(e.out, "Recorded that gateways on %s accept keys with prefix %q.\n", store, format.Prefix())
			}
			if len(names) == 0 {
				fmt.Fprintf(e.out, "Key store %s was already up to date (schema version %d); nothing applied.\n", store, v)
			} else {
				fmt.Fprintf(e.out, "Applied %s to %s; it is at schema version %d.\n", strings.Join(names, ", "), store, v)
			}
			return nil
		})
	}
	return c
}

// checkPrefix refuses a prefix no gateway on the store recorded, and
// notes when gateways recorded another one since: the gateway that took
// this prefix may have been changed to the other.
// prefixFlag returns the key format of --prefix, else KEYGATE_PREFIX,
// else the default.
func prefixFlag(cmd *cobra.Command) (keystore.Format, error) {
	prefix, _ := cmd.Flags().GetString("prefix")
	if !cmd.Flags().Changed("prefix") {
		prefix = os.Getenv(envPrefix)
	}
	format, err := keystore.NewFormat(prefix)
	if err != nil {
		return format, fmt.Errorf("--prefix: %v", err)
	}
	return format, nil
}

func checkPrefix(e *cliEnv, s keystore.Store, prefix string) error {
	recorded, err := s.Prefixes(e.ctx)
	if err != nil || len(recorded) == 0 {
		return err // no gateway has said yet: any prefix
	}
	latest := recorded[0]
	var mine *keystore.RecordedPrefix
	var names []string
	for i, r := range recorded {
		names = append(names, r.Prefix)
		if r.At.After(latest.At) {
			latest = r
		}
		if r.Prefix == prefix {
			mine = &recorded[i]
		}
	}
	store := keystore.RedactDSN(e.dsn)
	if mine == nil {
		return fmt.Errorf("no gateway on %s accepts keys with prefix %q (gateways recorded %s; the latest, %s): use --prefix %s "+
			"(or KEYGATE_PREFIX), or set `prefix %s` on a gateway first", store, prefix, strings.Join(names, ", "),
			latest.Prefix, latest.Prefix, prefix)
	}
	if latest.Prefix != prefix && latest.At.Sub(mine.At) > time.Minute {
		fmt.Fprintf(e.errOut, "note: prefix %q was last recorded by a gateway on %s at %s, %q since (at %s): "+
			"check that a gateway still accepts %q\n", prefix, store, formatTime(mine.At), latest.Prefix, formatTime(latest.At), prefix)
	}
	return nil
}

func resetPepperCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "reset-pepper",
		Short: "Forgets the pepper a key store recorded, while it holds no keys",
		Long: `The first gateway or command that uses a key store with a pepper records a
check value, and every other pepper is refused from then on. If that first
pepper was a mistake, this command forgets it, so that the next one used is
recorded instead. It refuses while the store holds any key: those keys work
with the recorded pepper only (revoked keys count too); to start over with
another pepper, use a new store. Gateways already running on the store keep
their pepper until they are restarted.`,
		Args: cobra.NoArgs,
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		return withStore(cmd, pepperIgnored, existingOnly, func(e *cliEnv, s keystore.Store, _ *keystore.Hasher) error {
			if err := s.ResetPepperCheck(e.ctx); err != nil {
				return err
			}
			fmt.Fprintf(e.out, "Key store %s no longer records a pepper; the next gateway or command with a pepper records its own.\n"+
				"Gateways running on it keep the pepper they started with: restart them with the new one.\n",
				keystore.RedactDSN(e.dsn))
			return nil
		})
	}
	return c
}

// keyIDArg checks an id argument before anything is opened. The id may
// come with its prefix, as the key starts ("kg_3hT9xqA2bC4d"; in a shell,
// ${KEY%_*} of a key).
func keyIDArg(arg string) (string, error) {
	if keystore.ValidID(arg) {
		return arg, nil
	}
	if i := strings.LastIndexByte(arg, '_'); i > 0 && keystore.ValidID(arg[i+1:]) && keystore.ValidatePrefix(arg[:i]) == nil {
		return arg[i+1:], nil
	}
	if strings.Count(arg, "_") >= 2 && len(arg) > 40 {
		return "", errors.New("that looks like a key, not a key id: pass the id (the 12 characters after the prefix), and never put keys on a command line")
	}
	return "", fmt.Errorf("%q is not a key id (12 letters and digits)", arg)
}

// noKey turns ErrNotFound into an error naming the id and the store.
func noKey(e *cliEnv, id string, err error) error {
	if errors.Is(err, keystore.ErrNotFound) {
		return fmt.Errorf("no key with id %s in %s", id, keystore.RedactDSN(e.dsn))
	}
	return err
}

// parseExpiry accepts "" (no expiry), a duration from now ("2w", "30d",
// "12h") or a point in time (RFC 3339, or a date meaning midnight UTC).
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := when.Parse("--expires", s, now, 1)
	if err == nil && !t.After(now) {
		return time.Time{}, fmt.Errorf("--expires %s is in the past", s)
	}
	return t, err
}

// parseNotBefore accepts "" (at once), a duration from now ("1h", "2d")
// or a point in time (RFC 3339, or a date meaning midnight UTC).
func parseNotBefore(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return when.Parse("--not-before", s, now, 1)
}

func parseMetadata(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, pair := range pairs {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("--metadata %q is not key=value", pair)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("--metadata key %q given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

func describe(k *keystore.Key) string {
	parts := []string{fmt.Sprintf("%q", k.Name)}
	if k.Owner != "" {
		parts = append(parts, "owner "+k.Owner)
	}
	if len(k.Scopes) > 0 {
		parts = append(parts, "scopes "+strings.Join(k.Scopes, ","))
	}
	if !k.ExpiresAt.IsZero() {
		parts = append(parts, "expires "+formatTime(k.ExpiresAt))
	}
	return strings.Join(parts, ", ")
}

func printKey(w io.Writer, k *keystore.Key, lastUsed time.Time, spent *keystore.Spent) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID:\t%s\n", k.ID)
	fmt.Fprintf(tw, "Name:\t%s\n", k.Name)
	fmt.Fprintf(tw, "Owner:\t%s\n", dash(k.Owner))
	fmt.Fprintf(tw, "Status:\t%s\n", k.Status(time.Now()))
	fmt.Fprintf(tw, "Hint:\t%s\n", k.Hint)
	fmt.Fprintf(tw, "Scopes:\t%s\n", dash(strings.Join(k.Scopes, ", ")))
	fmt.Fprintf(tw, "Limits:\t%s\n", dash(describeLimits(k.Limits)))
	if k.OwnerLimits != nil {
		fmt.Fprintf(tw, "Owner's limits:\t%s (shared by the owner's keys)\n", describeLimits(k.OwnerLimits))
	}
	if spent != nil && spent.QuotaUsed != nil {
		fmt.Fprintf(tw, "Quota used:\t%d this period\n", *spent.QuotaUsed)
	}
	if spent != nil && spent.UsesLeft != nil {
		fmt.Fprintf(tw, "Uses left:\t%d\n", *spent.UsesLeft)
	}
	fmt.Fprintf(tw, "Created:\t%s\n", formatTime(k.CreatedAt))
	fmt.Fprintf(tw, "Expires:\t%s\n", dash(formatTime(k.ExpiresAt)))
	if !k.NotBefore.IsZero() {
		fmt.Fprintf(tw, "Not before:\t%s\n", formatTime(k.NotBefore))
	}
	switch {
	case k.ReplacedBy != "" && k.RevokedAt.After(time.Now()):
		fmt.Fprintf(tw, "Revoked:\t%s (when the rotation's grace ends)\n", formatTime(k.RevokedAt))
	default:
		fmt.Fprintf(tw, "Revoked:\t%s\n", dash(formatTime(k.RevokedAt)))
	}
	if len(k.AllowCIDRs) > 0 {
		fmt.Fprintf(tw, "Allowed from:\t%s\n", strings.ReplaceAll(keystore.CIDRText(k.AllowCIDRs), ",", ", "))
	}
	if k.Replaces != "" {
		fmt.Fprintf(tw, "Replaces:\t%s\n", k.Replaces)
	}
	if k.ReplacedBy != "" {
		fmt.Fprintf(tw, "Replaced by:\t%s\n", k.ReplacedBy)
	}
	fmt.Fprintf(tw, "Last used:\t%s\n", dash(formatTime(lastUsed)))
	for _, name := range sortedKeys(k.Metadata) {
		fmt.Fprintf(tw, "Metadata %s:\t%s\n", name, k.Metadata[name])
	}
	tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
