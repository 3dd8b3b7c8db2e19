// Package adminapi is Keygate's HTTP API for managing keys: the routes
// under /api-keys that the admin.api.api_keys module mounts on Caddy's
// admin endpoint. Every change goes through keystore.Lifecycle, so it
// writes its audit event in the same transaction, with the caller as the
// actor. Errors are problem+json documents with stable codes.
package adminapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/keystore"
)

// Prefix is the path every route of the API is under.
const Prefix = "/api-keys"

// Limits on what a request may send.
const (
	// MaxBody bounds a JSON request body.
	MaxBody = 1 << 20
	// MaxImportBody bounds an import file.
	MaxImportBody = 64 << 20
	// DefaultPageSize and MaxPageSize bound a list's page.
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Backend is the key store the API manages and what changes need.
type Backend struct {
	Store keystore.Store
	// Hasher is nil when no pepper is known: creating, rotating and
	// importing keys are refused.
	Hasher *keystore.Hasher
	// OtherPeppers are the other peppers of a pepper rotation (import
	// finds keys they hashed).
	OtherPeppers []*keystore.Hasher
	// Format is the prefix new keys get.
	Format keystore.Format
}

// Handler serves the API. Resolve gives the backend for one request
// (and a function to call when the request is done with it).
type Handler struct {
	Resolve func(ctx context.Context) (*Backend, func(), error)
	Logger  *zap.Logger
	// Now is the clock; nil: the system's.
	Now func() time.Time
}

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the API's OpenAPI 3.1 document.
func OpenAPI() []byte { return openAPI }

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// route is one operation: what it needs and does.
type route struct {
	method string
	run    func(h *Handler, c *call) error
}

// call is one request being served.
type call struct {
	w     http.ResponseWriter
	r     *http.Request
	b     *Backend
	id    string // the {id} of the path, if any
	actor string
	lc    *keystore.Lifecycle
}

// ServeHTTP routes a request under Prefix.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok || rest != "" && rest[0] != '/' {
		writeProblem(w, http.StatusNotFound, codeNotFound, "no such route: the API is under "+Prefix)
		return
	}
	routes, id, known := match(strings.Trim(rest, "/"))
	if !known {
		writeProblem(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no route %s; see GET %s/openapi.json", r.URL.Path, Prefix))
		return
	}
	var rt *route
	var allowed []string
	for i := range routes {
		allowed = append(allowed, routes[i].method)
		if routes[i].method == r.Method {
			rt = &routes[i]
		}
	}
	if rt == nil {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeProblem(w, http.StatusMethodNotAllowed, codeMethodNotAllowed,
			fmt.Sprintf("%s %s is not a route; this path takes %s", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
		return
	}
	if id != "" && !keystore.ValidID(id) {
		writeProblem(w, http.StatusNotFound, codeKeyNotFound, fmt.Sprintf("%q is not a key id (12 letters and digits)", id))
		return
	}
	c := &call{w: w, r: r, id: id, actor: actorOf(r)}
	if rt.run == nil { // the OpenAPI document needs no store
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
		return
	}
	b, release, err := h.Resolve(r.Context())
	if err != nil {
		h.fail(c, err)
		return
	}
	defer release()
	c.b = b
	c.lc = &keystore.Lifecycle{Store: b.Store, Format: b.Format, Hasher: b.Hasher, OtherPeppers: b.OtherPeppers}
	if err := rt.run(h, c); err != nil {
		h.fail(c, err)
	}
}

// match finds the routes of a path below Prefix, and its key id.
func match(path string) (routes []route, id string, ok bool) {
	parts := strings.Split(path, "/")
	switch {
	case path == "":
		return []route{{http.MethodGet, (*Handler).list}, {http.MethodPost, (*Handler).create}}, "", true
	case path == "openapi.json":
		return []route{{http.MethodGet, nil}}, "", true
	case path == "usage":
		return []route{{http.MethodGet, (*Handler).usage}}, "", true
	case path == "audit":
		return []route{{http.MethodGet, (*Handler).audit}}, "", true
	case path == "audit/verify":
		return []route{{http.MethodGet, (*Handler).verify}}, "", true
	case path == "import":
		return []route{{http.MethodPost, (*Handler).importKeys}}, "", true
	case path == "jwks":
		return []route{{http.MethodGet, (*Handler).jwks}}, "", true
	case len(parts) == 1:
		return []route{{http.MethodGet, (*Handler).get}, {http.MethodPatch, (*Handler).update}, {http.MethodDelete, (*Handler).delete}}, parts[0], true
	case len(parts) == 2 && parts[1] == "rotate":
		return []route{{http.MethodPost, (*Handler).rotate}}, parts[0], true
	case len(parts) == 2 && parts[1] == "revoke":
		return []route{{http.MethodPost, (*Handler).revoke}}, parts[0], true
	case len(parts) == 2 && parts[1] == "usage":
		return []route{{http.MethodGet, (*Handler).usage}}, parts[0], true
	}
	return nil, "", false
}

// actorOf is who the audit trail records for a request: the client
// certificate's subject when Caddy's remote admin endpoint verified one,
// else the admin listener's remote address.
func actorOf(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cert := r.TLS.PeerCertificates[0]
		name := cert.Subject.CommonName
		if name == "" && len(cert.DNSNames) > 0 {
			name = cert.DNSNames[0]
		}
		if name == "" {
			name = "serial " + cert.SerialNumber.String()
		}
		return truncateActor("admin:cert:" + name)
	}
	if r.RemoteAddr == "" || r.RemoteAddr == "@" {
		return "admin:unix"
	}
	return truncateActor("admin:" + r.RemoteAddr)
}

// truncateActor makes s an actor name: quoted if it holds anything but
// printable text (a certificate's subject may), cut to the longest
// allowed.
func truncateActor(s string) string {
	if keystore.ValidateActor(s) != nil {
		s = strconv.QuoteToASCII(s)
	}
	if len(s) > keystore.MaxActorLen {
		s = s[:keystore.MaxActorLen]
	}
	return s
}

// fail answers a request that failed with err.
func (h *Handler) fail(c *call, err error) {
	var tooBig *http.MaxBytesError
	var ie *keystore.ImportError
	switch {
	case errors.As(err, &tooBig):
		writeProblem(c.w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("the request body is larger than %d bytes", tooBig.Limit))
	case errors.As(err, &ie):
		rows := make([]rowProblem, 0, len(ie.Rows))
		for _, r := range ie.Rows {
			rows = append(rows, rowProblem{r.Line, r.Err.Error()})
		}
		writeJSON(c.w, http.StatusUnprocessableEntity, problem{Type: problemType(codeImportRejected), Title: title(codeImportRejected),
			Status: http.StatusUnprocessableEntity, Detail: fmt.Sprintf("nothing imported: %d bad row(s)", len(ie.Rows)), Code: codeImportRejected, Rows: rows})
	case errors.Is(err, errBadRequest):
		writeProblem(c.w, http.StatusBadRequest, codeBadRequest, err.Error())
	case errors.Is(err, keystore.ErrNotFound):
		msg := "no such key"
		if c.id != "" {
			msg = "no key with id " + c.id
		}
		writeProblem(c.w, http.StatusNotFound, codeKeyNotFound, msg)
	case errors.Is(err, keystore.ErrInvalid):
		writeProblem(c.w, http.StatusUnprocessableEntity, codeInvalid, err.Error())
	case errors.Is(err, keystore.ErrConflict), errors.Is(err, keystore.ErrDuplicate):
		writeProblem(c.w, http.StatusConflict, codeConflict, err.Error())
	case errors.Is(err, errNoPepper):
		writeProblem(c.w, http.StatusServiceUnavailable, codeNoPepper, err.Error())
	case c.r.Context().Err() != nil:
		// The caller left; nobody reads the answer.
	default:
		if h.Logger != nil {
			h.Logger.Error("admin API: key store request failed", zap.String("method", c.r.Method),
				zap.String("path", c.r.URL.Path), zap.Error(err))
		}
		writeProblem(c.w, http.StatusServiceUnavailable, codeStoreUnavailable, "the key store did not answer: "+err.Error())
	}
}

// Stable error codes; docs/admin-api.md lists them.
const (
	codeBadRequest       = "bad_request"
	codeInvalid          = "invalid_field"
	codeNotFound         = "not_found"
	codeKeyNotFound      = "key_not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeTooLarge         = "body_too_large"
	codeUnsupportedType  = "unsupported_media_type"
	codeConflict         = "conflict"
	codeImportRejected   = "import_rejected"
	codeNoPepper         = "pepper_unavailable"
	codeStoreUnavailable = "store_unavailable"
)

func title(code string) string {
	switch code {
	case codeBadRequest:
		return "Bad request"
	case codeInvalid:
		return "Invalid field"
	case codeNotFound:
		return "No such route"
	case codeKeyNotFound:
		return "No such key"
	case codeMethodNotAllowed:
		return "Method not allowed"
	case codeTooLarge:
		return "Request body too large"
	case codeUnsupportedType:
		return "Unsupported media type"
	case codeConflict:
		return "Conflict with the key's state"
	case codeImportRejected:
		return "Import rejected"
	case codeNoPepper:
		return "Pepper unavailable"
	}
	return "Key store unavailable"
}

func problemType(code string) string { return "https://keygate.dev/problems/admin/" + code }

// problem is an RFC 9457 problem document.
type problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail"`
	Code   string       `json:"code"`
	Rows   []rowProblem `json:"rows,omitempty"`
}

type rowProblem struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(problem{Type: problemType(code), Title: title(code), Status: status, Detail: detail, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ct := "application/json"
	if _, ok := v.(problem); ok {
		ct = "application/problem+json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// errBadRequest marks an error of the request's form: its JSON, its
// query parameters.
var errBadRequest = errors.New("bad request")

type badRequest struct{ msg string }

func (e *badRequest) Error() string        { return e.msg }
func (e *badRequest) Is(target error) bool { return target == errBadRequest }

func badf(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

var errNoPepper = errors.New("this gateway has no pepper for the key store, so it cannot make keys: set the keygate global option's pepper (or KEYGATE_PEPPER_FILE)")
