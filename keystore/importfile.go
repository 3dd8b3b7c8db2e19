package keystore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Import file formats.
const (
	ImportCSV   = "csv"
	ImportJSONL = "jsonl"
)

// ImportColumns are the fields of an import row, as CSV header names
// and JSON Lines members. key and name are required. CSV gives scopes and
// allow_cidrs separated by commas or spaces, and each metadata entry as a
// column "metadata.NAME"; JSON Lines gives them as arrays and an object.
// Times are RFC 3339 or YYYY-MM-DD (midnight UTC).
var ImportColumns = []string{"key", "name", "owner", "scopes", "expires_at", "not_before", "allow_cidrs", "metadata.NAME"}

// MaxImportLine bounds one line (a JSON Lines row, a CSV record).
const MaxImportLine = 1 << 20

// ParseImport reads an import file. Rows it cannot read are returned as
// RowErrors beside the rows it could, so that one run reports every bad
// line; an error is what stops the reading altogether (a CSV header
// without key or name, unreadable input).
func ParseImport(r io.Reader, format string) ([]ImportRow, []RowError, error) {
	switch format {
	case ImportCSV:
		return parseCSV(r)
	case ImportJSONL:
		return parseJSONL(r)
	}
	return nil, nil, fmt.Errorf("unknown import format %q: use %s or %s", format, ImportCSV, ImportJSONL)
}

// ImportFormatOf guesses a file's format from its name: .jsonl, .ndjson
// and .json are JSON Lines, everything else CSV.
func ImportFormatOf(name string) string {
	switch {
	case strings.HasSuffix(name, ".jsonl"), strings.HasSuffix(name, ".ndjson"), strings.HasSuffix(name, ".json"):
		return ImportJSONL
	}
	return ImportCSV
}

// importFields is one row before it is checked.
type importFields struct {
	Key        string            `json:"key"`
	Name       string            `json:"name"`
	Owner      string            `json:"owner"`
	Scopes     []string          `json:"scopes"`
	ExpiresAt  string            `json:"expires_at"`
	NotBefore  string            `json:"not_before"`
	AllowCIDRs []string          `json:"allow_cidrs"`
	Metadata   map[string]string `json:"metadata"`
}

// row converts the fields into an ImportRow.
func (f *importFields) row(line int) (ImportRow, error) {
	r := ImportRow{Line: line, Key: strings.TrimSpace(f.Key)}
	if r.Key == "" {
		return r, errors.New("key is empty")
	}
	p := &r.Params
	p.Name, p.Owner, p.Metadata = f.Name, f.Owner, f.Metadata
	p.Scopes = slices.DeleteFunc(f.Scopes, func(s string) bool { return s == "" })
	if len(p.Scopes) == 0 {
		p.Scopes = nil
	}
	var err error
	if p.ExpiresAt, err = parseImportTime("expires_at", f.ExpiresAt); err != nil {
		return r, err
	}
	if p.NotBefore, err = parseImportTime("not_before", f.NotBefore); err != nil {
		return r, err
	}
	for _, c := range f.AllowCIDRs {
		if c == "" {
			continue
		}
		ps, err := ParseCIDRs(c)
		if err != nil {
			return r, fmt.Errorf("allow_cidrs: %v", err)
		}
		p.AllowCIDRs = append(p.AllowCIDRs, ps...)
	}
	return r, nil
}

func parseImportTime(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s %q is not a time: use RFC 3339 (2027-01-31T12:00:00Z) or YYYY-MM-DD", field, s)
}

// splitList splits a CSV cell of scopes or networks on commas and spaces.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

func parseCSV(in io.Reader) ([]ImportRow, []RowError, error) {
	br := bufio.NewReader(in)
	// A spreadsheet's UTF-8 byte order mark is not part of the header.
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, errors.New("the file is empty: a CSV import starts with a header line naming its columns (" + strings.Join(ImportColumns, ",") + ")")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the CSV header: %w", err)
	}
	cols := make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case slices.Contains(ImportColumns, h) && h != "metadata.NAME":
		case strings.HasPrefix(h, "metadata.") && len(h) > len("metadata."):
			h = "metadata." + strings.TrimSpace(header[i])[len("metadata."):] // metadata names keep their case
		default:
			return nil, nil, fmt.Errorf("line 1: unknown column %q; the columns are %s", header[i], strings.Join(ImportColumns, ", "))
		}
		if seen[h] {
			return nil, nil, fmt.Errorf("line 1: column %q appears twice", header[i])
		}
		seen[h] = true
		cols[i] = h
	}
	for _, need := range []string{"key", "name"} {
		if !seen[need] {
			return nil, nil, fmt.Errorf("line 1: the header has no %q column; it needs key and name, and may have %s", need, strings.Join(ImportColumns[2:], ", "))
		}
	}
	var rows []ImportRow
	var bad []RowError
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
			bad = append(bad, RowError{pe.StartLine, fmt.Errorf("%d fields, but the header has %d", len(rec), len(cols))})
			continue
		}
		if err != nil {
			// A broken quote leaves the rest unreadable.
			if errors.As(err, &pe) {
				bad = append(bad, RowError{pe.StartLine, fmt.Errorf("%v; the rest of the file was not read", pe.Err)})
				return rows, bad, nil
			}
			return nil, nil, fmt.Errorf("reading the CSV file: %w", err)
		}
		if len(rows)+len(bad) >= MaxImportRows {
			return nil, nil, fmt.Errorf("more than %d rows; split the file", MaxImportRows)
		}
		line, _ := cr.FieldPos(0)
		var f importFields
		for i, v := range rec {
			switch c := cols[i]; c {
			case "key":
				f.Key = v
			case "name":
				f.Name = v
			case "owner":
				f.Owner = v
			case "scopes":
				f.Scopes = splitList(v)
			case "expires_at":
				f.ExpiresAt = v
			case "not_before":
				f.NotBefore = v
			case "allow_cidrs":
				f.AllowCIDRs = splitList(v)
			default:
				if v == "" {
					continue
				}
				if f.Metadata == nil {
					f.Metadata = map[string]string{}
				}
				f.Metadata[strings.TrimPrefix(c, "metadata.")] = v
			}
		}
		r, err := f.row(line)
		if err != nil {
			bad = append(bad, RowError{line, err})
			continue
		}
		rows = append(rows, r)
	}
	return rows, bad, nil
}

func parseJSONL(in io.Reader) ([]ImportRow, []RowError, error) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), MaxImportLine)
	var rows []ImportRow
	var bad []RowError
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		}
		if len(b) == 0 {
			continue
		}
		if len(rows)+len(bad) >= MaxImportRows {
			return nil, nil, fmt.Errorf("more than %d rows; split the file", MaxImportRows)
		}
		var f importFields
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			bad = append(bad, RowError{line, jsonRowError(err)})
			continue
		}
		if dec.More() {
			bad = append(bad, RowError{line, errors.New("more than one JSON value on the line")})
			continue
		}
		r, err := f.row(line)
		if err != nil {
			bad = append(bad, RowError{line, err})
			continue
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("line %d is longer than %d bytes", line+1, MaxImportLine)
		}
		return nil, nil, fmt.Errorf("reading the file: %w", err)
	}
	if len(rows)+len(bad) == 0 {
		return nil, nil, errors.New("the file is empty: JSON Lines hold one object per line")
	}
	return rows, bad, nil
}

// jsonRowError says what is wrong with a JSON row without quoting its
// values: a row holds a key.
func jsonRowError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field == "":
		return fmt.Errorf("not a JSON object but a JSON %s", te.Value)
	case errors.As(err, &te):
		return fmt.Errorf("%s must be %s, not a JSON %s", te.Field, importFieldType(te.Field), te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("not valid JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("not valid JSON: the line ends inside a value")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown field %s; the fields are %s", strings.TrimPrefix(err.Error(), "json: unknown field "),
			strings.ReplaceAll(strings.Join(ImportColumns, ", "), "metadata.NAME", "metadata"))
	}
	return errors.New("not a JSON object")
}

func importFieldType(field string) string {
	switch field {
	case "scopes", "allow_cidrs":
		return "an array of strings"
	case "metadata":
		return "an object of strings"
	}
	return "a string"
}

// ImportFile reads an import file and imports it (see Import): every bad
// line, unreadable or invalid, is reported in one ImportError.
func (l *Lifecycle) ImportFile(ctx context.Context, actor string, r io.Reader, format string, dryRun bool) ([]Imported, error) {
	rows, bad, err := ParseImport(r, format)
	if err != nil {
		return nil, invalid(err)
	}
	return l.importRows(ctx, actor, rows, bad, dryRun)
}
