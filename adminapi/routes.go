package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/audit"
	"github.com/keygate/keygate/internal/when"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/signing"
)

// keyPage is a page of GET /api-keys.
type keyPage struct {
	Keys []keystore.KeyStatus `json:"keys"`
	// Next is the cursor of the next page ("after"), when this one is
	// full.
	Next string `json:"next,omitempty"`
}

func (h *Handler) list(c *call) error {
	q, err := query(c.r, "owner", "status", "limit", "after")
	if err != nil {
		return err
	}
	f := keystore.ListFilter{Owner: q.Get("owner"), After: q.Get("after"), Limit: DefaultPageSize, Now: h.now()}
	if s := q.Get("status"); s == "all" {
		f.Statuses = nil
	} else if s != "" {
		f.Statuses = strings.Split(s, ",")
	} else {
		f.Statuses = keystore.WorkingStatuses()
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			return badf("limit must be a whole number from 1 to %d, not %q", MaxPageSize, s)
		}
		f.Limit = n
	}
	if f.After != "" && !keystore.ValidID(f.After) {
		return badf("after must be a key id (12 letters and digits), not %q", f.After)
	}
	if err := f.Validate(); err != nil {
		return badf("%v", err)
	}
	keys, err := c.b.Store.List(c.r.Context(), f)
	if errors.Is(err, keystore.ErrNotFound) {
		return badf("after: there is no key %s (deleted since the last page?); start again without after", f.After)
	}
	if err != nil {
		return err
	}
	page := keyPage{Keys: keystore.WithStatuses(keys, f.Now)}
	if len(keys) == f.Limit {
		page.Next = keys[len(keys)-1].ID
	}
	return writeJSON(c.w, http.StatusOK, page)
}

// keyFields are the fields of a key a request may set.
type keyFields struct {
	Name       *string            `json:"name"`
	Owner      *string            `json:"owner"`
	Scopes     *[]string          `json:"scopes"`
	Metadata   map[string]*string `json:"metadata"`
	ExpiresAt  *time.Time         `json:"expires_at"`
	NotBefore  *time.Time         `json:"not_before"`
	AllowCIDRs *[]string          `json:"allow_cidrs"`
	Limits     *keystore.Limits   `json:"limits"`
}

// present records which members a JSON object had, nulls included.
type present map[string]bool

func (h *Handler) create(c *call) error {
	if c.b.Hasher == nil {
		return errNoPepper
	}
	var f keyFields
	if _, err := decode(c, &f); err != nil {
		return err
	}
	p := keystore.NewKeyParams{Metadata: map[string]string{}}
	if f.Name == nil {
		return invalidf("name is required")
	}
	p.Name = *f.Name
	if f.Owner != nil {
		p.Owner = *f.Owner
	}
	if f.Scopes != nil {
		p.Scopes = *f.Scopes
	}
	for k, v := range f.Metadata {
		if v == nil {
			return invalidf("metadata %q: a new key's metadata values are strings", k)
		}
		p.Metadata[k] = *v
	}
	if f.ExpiresAt != nil {
		p.ExpiresAt = *f.ExpiresAt
	}
	if f.NotBefore != nil {
		p.NotBefore = *f.NotBefore
	}
	var err error
	if f.AllowCIDRs != nil {
		if p.AllowCIDRs, err = parseCIDRs(*f.AllowCIDRs); err != nil {
			return err
		}
	}
	p.Limits = f.Limits
	key, rec, err := c.lc.Create(c.r.Context(), c.actor, p)
	if err != nil {
		return err
	}
	c.w.Header().Set("Location", Prefix+"/"+rec.ID)
	return writeJSON(c.w, http.StatusCreated, issued{keystore.WithStatus(rec, h.now()), key})
}

// issued is a new key's record and, once, the key.
type issued struct {
	keystore.KeyStatus
	Key string `json:"key"`
}

func (h *Handler) get(c *call) error {
	if _, err := query(c.r); err != nil {
		return err
	}
	k, err := c.b.Store.Get(c.r.Context(), c.id)
	if err != nil {
		return err
	}
	d, err := keystore.Detail(c.r.Context(), c.b.Store, k, h.now())
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, d)
}

func (h *Handler) update(c *call) error {
	var f keyFields
	has, err := decode(c, &f)
	if err != nil {
		return err
	}
	var ch keystore.KeyChange
	ch.Name, ch.Owner, ch.Scopes = f.Name, f.Owner, f.Scopes
	for _, name := range []string{"name", "owner", "scopes"} {
		if has[name] && !setIn(name, f) {
			return invalidf("%s cannot be null", name)
		}
	}
	if has["metadata"] {
		if f.Metadata == nil {
			return invalidf("metadata must be an object; a null value removes one entry")
		}
		ch.Metadata = map[string]string{}
		for k, v := range f.Metadata {
			if v == nil {
				ch.Metadata[k] = "" // removes the entry
			} else if *v == "" {
				return invalidf("metadata %q: use null to remove an entry", k)
			} else {
				ch.Metadata[k] = *v
			}
		}
	}
	if has["expires_at"] {
		ch.ExpiresAt = new(time.Time) // null: no expiry
		if f.ExpiresAt != nil {
			ch.ExpiresAt = f.ExpiresAt
		}
	}
	if has["not_before"] {
		ch.NotBefore = new(time.Time)
		if f.NotBefore != nil {
			ch.NotBefore = f.NotBefore
		}
	}
	if has["allow_cidrs"] {
		cidrs := []netip.Prefix(nil)
		if f.AllowCIDRs != nil {
			if cidrs, err = parseCIDRs(*f.AllowCIDRs); err != nil {
				return err
			}
		}
		ch.AllowCIDRs = &cidrs
	}
	if has["limits"] {
		ch.Limits = &f.Limits
	}
	k, changed, err := c.lc.Update(c.r.Context(), c.actor, c.id, ch)
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, keystore.ChangedKey{KeyStatus: keystore.WithStatus(k, h.now()), Changed: changed})
}

func setIn(name string, f keyFields) bool {
	switch name {
	case "name":
		return f.Name != nil
	case "owner":
		return f.Owner != nil
	}
	return f.Scopes != nil
}

func (h *Handler) delete(c *call) error {
	if _, err := query(c.r); err != nil {
		return err
	}
	k, err := c.lc.Delete(c.r.Context(), c.actor, c.id)
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, keystore.KeyStatus{Key: k, Status: "deleted"})
}

func (h *Handler) revoke(c *call) error {
	if err := emptyBody(c); err != nil {
		return err
	}
	k, changed, err := c.lc.Revoke(c.r.Context(), c.actor, c.id)
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, keystore.ChangedKey{KeyStatus: keystore.WithStatus(k, h.now()), Changed: changed})
}

// rotation is the answer to a rotation: the new key's record, the key
// once, and when the old key stops working.
type rotation struct {
	keystore.KeyStatus
	Key          string    `json:"key"`
	OldRevokedAt time.Time `json:"old_key_revoked_at"`
}

func (h *Handler) rotate(c *call) error {
	if c.b.Hasher == nil {
		return errNoPepper
	}
	var body struct {
		Grace *string `json:"grace"`
	}
	if c.r.ContentLength != 0 {
		if _, err := decode(c, &body); err != nil {
			return err
		}
	}
	grace := 24 * time.Hour
	if body.Grace != nil {
		d, err := time.ParseDuration(*body.Grace)
		if err != nil {
			return invalidf("grace %q is not a duration (24h, 90m, 0s)", *body.Grace)
		}
		grace = d
	}
	key, rec, old, err := c.lc.Rotate(c.r.Context(), c.actor, c.id, grace)
	if err != nil {
		return err
	}
	c.w.Header().Set("Location", Prefix+"/"+rec.ID)
	return writeJSON(c.w, http.StatusCreated, rotation{keystore.WithStatus(rec, h.now()), key, old.RevokedAt})
}

func (h *Handler) usage(c *call) error {
	allowed := []string{"since", "by"}
	if c.id == "" {
		allowed = append(allowed, "owner")
	}
	q, err := query(c.r, allowed...)
	if err != nil {
		return err
	}
	uq := keystore.UsageQuery{KeyID: c.id, Owner: q.Get("owner"), By: keystore.ByHour, Since: h.now().Add(-24 * time.Hour)}
	if s := q.Get("by"); s != "" {
		if s != keystore.ByMinute && s != keystore.ByHour && s != keystore.ByDay {
			return badf("by must be minute, hour or day, not %q", s)
		}
		uq.By = s
	}
	if uq.Since, err = since(q, uq.Since); err != nil {
		return err
	}
	if c.id != "" {
		if _, err := c.b.Store.Get(c.r.Context(), c.id); err != nil {
			return err
		}
	}
	buckets, err := c.b.Store.Usage(c.r.Context(), uq)
	if err != nil {
		return err
	}
	out := make([]keystore.UsageReport, 0, len(buckets))
	for _, b := range buckets {
		out = append(out, b.Report())
	}
	return writeJSON(c.w, http.StatusOK, out)
}

func (h *Handler) audit(c *call) error {
	q, err := query(c.r, "key", "owner", "since")
	if err != nil {
		return err
	}
	f := audit.Filter{KeyID: q.Get("key"), Owner: q.Get("owner")}
	if f.KeyID != "" && !keystore.ValidID(f.KeyID) {
		return badf("key must be a key id (12 letters and digits), not %q", f.KeyID)
	}
	if f.Since, err = since(q, time.Time{}); err != nil {
		return err
	}
	out := []audit.Record{}
	err = c.b.Store.Events(c.r.Context(), f, func(e *audit.Event) error {
		out = append(out, audit.RecordOf(e))
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(c.w, http.StatusOK, out)
}

// verification is the answer of GET /api-keys/audit/verify.
type verification struct {
	OK       bool   `json:"ok"`
	Events   int64  `json:"events"`
	Head     string `json:"head,omitempty"`
	BrokenAt int64  `json:"broken_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func (h *Handler) verify(c *call) error {
	q, err := query(c.r, "head")
	if err != nil {
		return err
	}
	var want *audit.Head
	if s := q.Get("head"); s != "" {
		hd, err := audit.ParseHead(s)
		if err != nil {
			return badf("head: %v", err)
		}
		want = &hd
	}
	head, err := keystore.VerifyAudit(c.r.Context(), c.b.Store, want)
	var broken *audit.BrokenError
	switch {
	case errors.As(err, &broken):
		return writeJSON(c.w, http.StatusOK, verification{BrokenAt: broken.Seq, Reason: broken.Reason})
	case err != nil:
		return err
	}
	v := verification{OK: true, Events: head.Seq}
	if head.Seq > 0 {
		v.Head = head.String()
	}
	return writeJSON(c.w, http.StatusOK, v)
}

// imported is one line's result in the answer of an import.
type imported struct {
	Line   int    `json:"line"`
	ID     string `json:"id,omitempty"`
	Result string `json:"result"`
}

func (h *Handler) importKeys(c *call) error {
	if c.b.Hasher == nil {
		return errNoPepper
	}
	q, err := query(c.r, "format", "dry_run")
	if err != nil {
		return err
	}
	format := q.Get("format")
	if format == "" {
		mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
		switch mt {
		case "text/csv":
			format = keystore.ImportCSV
		case "application/jsonl", "application/x-ndjson", "application/x-jsonlines":
			format = keystore.ImportJSONL
		default:
			writeProblem(c.w, http.StatusUnsupportedMediaType, codeUnsupportedType,
				fmt.Sprintf("Content-Type %q: send text/csv or application/jsonl, or say ?format=csv|jsonl", c.r.Header.Get("Content-Type")))
			return nil
		}
	}
	if format != keystore.ImportCSV && format != keystore.ImportJSONL {
		return badf("format must be csv or jsonl, not %q", format)
	}
	dryRun := false
	if s := q.Get("dry_run"); s != "" {
		if dryRun, err = strconv.ParseBool(s); err != nil {
			return badf("dry_run must be true or false, not %q", s)
		}
	}
	// Read the whole body first: a body over the limit is refused as
	// such, not as a file cut short.
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, MaxImportBody))
	if err != nil {
		return err
	}
	done, err := c.lc.ImportFile(c.r.Context(), c.actor, bytes.NewReader(body), format, dryRun)
	if err != nil {
		return err
	}
	out := struct {
		DryRun   bool       `json:"dry_run"`
		Imported int        `json:"imported"`
		Existing int        `json:"existing"`
		Lines    []imported `json:"lines"`
	}{DryRun: dryRun, Lines: make([]imported, 0, len(done))}
	for _, d := range done {
		r := imported{Line: d.Line, ID: d.Key.ID, Result: "imported"}
		switch {
		case d.Differs:
			r.Result, out.Existing = "exists_differs", out.Existing+1
		case d.Existed:
			r.Result, out.Existing = "exists", out.Existing+1
		case dryRun:
			r.Result, r.ID, out.Imported = "would_import", "", out.Imported+1
		default:
			out.Imported++
		}
		out.Lines = append(out.Lines, r)
	}
	return writeJSON(c.w, http.StatusOK, out)
}

// jwks serves the public keys that verify the identity tokens gateways
// send upstream (identity_jwt).
func (h *Handler) jwks(c *call) error {
	if _, err := query(c.r); err != nil {
		return err
	}
	b, err := signing.JWKS(c.r.Context(), c.b.Store, h.now())
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/jwk-set+json")
	c.w.Header().Set("Cache-Control", "no-store")
	_, err = c.w.Write(b)
	return err
}

// decode reads a JSON object body into v: one object, no unknown
// members, within MaxBody. It returns which members the object had.
func decode(c *call, v any) (present, error) {
	if _, err := query(c.r); err != nil {
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type")); mt != "application/json" && c.r.Header.Get("Content-Type") != "" {
		return nil, badf("Content-Type must be application/json, not %q", c.r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, MaxBody))
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badf("the request body is empty: send a JSON object")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return nil, jsonError(err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, jsonError(err)
	}
	has := present{}
	for k := range members {
		has[k] = true
	}
	return has, nil
}

// jsonError explains a JSON body that could not be read.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return err
	case errors.As(err, &se):
		return badf("the body is not valid JSON (at byte %d): %v", se.Offset, se)
	case errors.As(err, &te) && te.Field == "":
		return badf("the body must be a JSON object, not a JSON %s", te.Value)
	case errors.As(err, &te):
		return badf("%s must be %s, not a JSON %s", te.Field, jsonType(te.Type.String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badf("the body is not valid JSON: it ends early")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return badf("the body is not valid JSON: %v", err)
}

func jsonType(goType string) string {
	switch {
	case strings.Contains(goType, "time.Time"):
		return "an RFC 3339 time string"
	case strings.Contains(goType, "[]string"):
		return "an array of strings"
	case strings.Contains(goType, "map["):
		return "an object"
	case strings.Contains(goType, "int"):
		return "a whole number"
	case strings.Contains(goType, "Limits"):
		return "an object (rate, burst, quota, uses, refill)"
	}
	return "a string"
}

// emptyBody refuses a body on a route that takes none.
func emptyBody(c *call) error {
	if _, err := query(c.r); err != nil {
		return err
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, MaxBody))
	if err != nil {
		return err
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && string(t) != "{}" {
		return badf("this route takes no request body")
	}
	return nil
}

// query returns the request's query parameters, refusing unknown ones
// and repeated ones.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badf("the query string is malformed: %v", err)
	}
	for name, vals := range q {
		known := false
		for _, a := range allowed {
			known = known || a == name
		}
		if !known {
			if len(allowed) == 0 {
				return nil, badf("unknown query parameter %q: this route takes none", name)
			}
			return nil, badf("unknown query parameter %q; this route takes %s", name, strings.Join(allowed, ", "))
		}
		if len(vals) > 1 {
			return nil, badf("query parameter %q is given %d times", name, len(vals))
		}
	}
	return q, nil
}

// since reads the since parameter as the CLI reads --since: a duration
// back from now (24h, 7d, 2w) or a time (RFC 3339 or YYYY-MM-DD).
func since(q url.Values, def time.Time) (time.Time, error) {
	s := q.Get("since")
	if s == "" {
		return def, nil
	}
	t, err := when.Parse("since", s, time.Now(), -1)
	if err != nil {
		return time.Time{}, badf("%v", err)
	}
	return t, nil
}

func parseCIDRs(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		ps, err := keystore.ParseCIDRs(s)
		if err != nil {
			return nil, invalidf("allow_cidrs: %v", err)
		}
		out = append(out, ps...)
	}
	return out, nil
}

// invalidf is a field value the API refuses before asking the store.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w", &fieldError{fmt.Sprintf(format, args...)})
}

type fieldError struct{ msg string }

func (e *fieldError) Error() string        { return e.msg }
func (e *fieldError) Is(target error) bool { return target == keystore.ErrInvalid }
