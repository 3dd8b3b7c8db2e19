package keystore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/audit"
)

// ImportRow is one legacy key to import: the key as its clients send it,
// the fields of its record, and the line of the file it came from.
type ImportRow struct {
	Line   int
	Key    string
	Params NewKeyParams
}

// Imported is what Import did with one row.
type Imported struct {
	Line int
	// Key is the stored record: new, or the one already there.
	Key *Key
	// Existed: the key was in the store already (imported before, maybe
	// changed, rotated or revoked since) and was left as it is.
	Existed bool
	// Differs: it existed with other fields than the row's. Import
	// changes no existing key: `update` does.
	Differs bool
}

// RowError is a bad row of an import file.
type RowError struct {
	Line int
	Err  error
}

func (e RowError) Error() string {
	if e.Line <= 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

// ImportError lists every bad row of an import file. Nothing of the file
// was imported.
type ImportError struct{ Rows []RowError }

// maxReportedRows bounds the rows an ImportError's message lists.
const maxReportedRows = 50

// Is makes an ImportError match ErrInvalid.
func (e *ImportError) Is(target error) bool { return target == ErrInvalid }

func (e *ImportError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "nothing imported: %d bad row(s)", len(e.Rows))
	for i, r := range e.Rows {
		if i == maxReportedRows {
			fmt.Fprintf(&b, "\n  … and %d more", len(e.Rows)-i)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(r.Error())
	}
	return b.String()
}

// MaxImportRows bounds the rows of one import.
const MaxImportRows = 1_000_000

// Import stores legacy keys (see CheckLegacyKey) so that a gateway with
// legacy_keys accepts them: only their digests, under ids of their own.
// It is all or nothing: every row is checked first, and one bad row
// (ImportError, naming the lines) imports none. A key whose digest is in
// the store already is left as it is, so importing the same rows again
// changes nothing. Each new key gets an "import" audit event, in the same
// transaction. With dryRun, Import checks and reports but stores nothing.
func (l *Lifecycle) Import(ctx context.Context, actor string, rows []ImportRow, dryRun bool) ([]Imported, error) {
	return l.importRows(ctx, actor, rows, nil, dryRun)
}

// importRows imports rows, or reports them with the bad rows found
// already (a file's unreadable lines).
func (l *Lifecycle) importRows(ctx context.Context, actor string, rows []ImportRow, bad []RowError, dryRun bool) ([]Imported, error) {
	if err := ValidateActor(actor); err != nil {
		return nil, err
	}
	if l.Hasher == nil {
		return nil, errors.New("importing keys needs the pepper")
	}
	if len(rows)+len(bad) > MaxImportRows {
		return nil, invalid(fmt.Errorf("%d rows is more than one import takes (%d); split the file", len(rows)+len(bad), MaxImportRows))
	}
	if len(rows)+len(bad) == 0 {
		return nil, invalid(errors.New("no keys to import"))
	}
	prefixes, err := l.keygatePrefixes(ctx)
	if err != nil {
		return nil, err
	}
	at := l.now()
	recs, err := checkImport(rows, bad, prefixes, l.Hasher, l.OtherPeppers, at)
	if err != nil {
		return nil, err
	}
	var out []Imported
	for attempt := 0; attempt < idAttempts; attempt++ {
		out, err = l.importRecords(ctx, actor, recs, dryRun)
		if !errors.Is(err, ErrDuplicate) {
			break
		}
		// An id taken (practically never), or another import of the
		// same key committed first: the next attempt sees it.
	}
	if errors.Is(err, errDryRun) {
		return out, nil
	}
	return out, err
}

// keygatePrefixes are the key prefixes a legacy key must not start with:
// the default, the Lifecycle's, and every one a gateway on the store
// recorded.
func (l *Lifecycle) keygatePrefixes(ctx context.Context) ([]string, error) {
	prefixes := []string{DefaultPrefix}
	if l.Format.prefix != "" {
		prefixes = append(prefixes, l.Format.Prefix())
	}
	recorded, err := l.Store.Prefixes(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the prefixes gateways accept: %w", err)
	}
	for _, p := range recorded {
		prefixes = append(prefixes, p.Prefix)
	}
	return slices.Compact(slices.Sorted(slices.Values(prefixes))), nil
}

// checkImport checks every row and makes its record (without an id), or
// returns an ImportError listing every bad row.
func checkImport(rows []ImportRow, bad []RowError, prefixes []string, h *Hasher, others []*Hasher, at time.Time) ([]importRecord, error) {
	bad = slices.Clone(bad)
	recs := make([]importRecord, 0, len(rows))
	seen := make(map[Digest]int, len(rows))
	for _, r := range rows {
		if err := CheckLegacyKey(r.Key, prefixes...); err != nil {
			bad = append(bad, RowError{r.Line, err})
			continue
		}
		p := r.Params
		if err := p.Validate(at); err != nil {
			bad = append(bad, RowError{r.Line, err})
			continue
		}
		d := h.Digest(LegacyKey(r.Key))
		if first, dup := seen[d]; dup {
			bad = append(bad, RowError{r.Line, fmt.Errorf("the same key as line %d", first)})
			continue
		}
		seen[d] = r.Line
		var alt []Digest
		for _, o := range others {
			alt = append(alt, o.Digest(LegacyKey(r.Key)))
		}
		recs = append(recs, importRecord{line: r.Line, alt: alt, rec: &Key{
			Name:       p.Name,
			Owner:      p.Owner,
			Scopes:     p.Scopes,
			Metadata:   p.Metadata,
			Hint:       legacyHint(r.Key),
			CreatedAt:  at,
			ExpiresAt:  truncate(p.ExpiresAt),
			NotBefore:  truncate(p.NotBefore),
			Limits:     p.Limits,
			AllowCIDRs: p.AllowCIDRs,
			Digest:     d,
			PepperID:   h.ID(),
		}})
	}
	if len(bad) > 0 {
		slices.SortStableFunc(bad, func(a, b RowError) int { return a.Line - b.Line })
		return nil, &ImportError{Rows: bad}
	}
	for _, r := range recs {
		normalize(r.rec)
	}
	return recs, nil
}

type importRecord struct {
	line int
	rec  *Key
	alt  []Digest // the key's digests with the other peppers of a rotation
}

// errDryRun rolls back a dry run's transaction.
var errDryRun = errors.New("dry run")

func (l *Lifecycle) importRecords(ctx context.Context, actor string, recs []importRecord, dryRun bool) ([]Imported, error) {
	out := make([]Imported, 0, len(recs))
	err := l.Store.Change(ctx, func(tx Tx) error {
		out = out[:0]
		for _, r := range recs {
			old, err := tx.Lookup(ctx, r.rec.Digest)
			for _, d := range r.alt {
				if !errors.Is(err, ErrNotFound) {
					break
				}
				old, err = tx.Lookup(ctx, d)
			}
			if err == nil {
				out = append(out, Imported{Line: r.line, Key: old, Existed: true, Differs: !sameFields(old, r.rec)})
				continue
			}
			if !errors.Is(err, ErrNotFound) {
				return err
			}
			rec := *r.rec
			if rec.ID, err = newID(); err != nil {
				return err
			}
			if err := tx.Insert(ctx, &rec); err != nil {
				return err
			}
			if err := appendEvent(ctx, tx, actor, audit.ActionImport, rec.CreatedAt, nil, &rec); err != nil {
				return err
			}
			out = append(out, Imported{Line: r.line, Key: &rec})
		}
		if dryRun {
			return errDryRun
		}
		return nil
	})
	return out, err
}
