package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// everySource is every kind of source at once, in the order a request is
// searched; several tests use it to show which source wins.
var everySource = []KeySource{
	{From: FromBearer},
	{From: FromHeader, Name: "X-Api-Key"},
	{From: FromQuery, Name: "api_key"},
	{From: FromCookie, Name: "api_key"},
}

// newRequest builds a GET request for target with the given header lines
// ("Name: value"); a name may repeat, as it can on the wire.
func newRequest(target string, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		r.Header.Add(name, strings.TrimSpace(value))
	}
	return r
}

func TestExtract(t *testing.T) {
	header := []KeySource{{From: FromHeader, Name: "X-Api-Key"}}
	query := []KeySource{{From: FromQuery, Name: "api_key"}}
	cookie := []KeySource{{From: FromCookie, Name: "api_key"}}
	bearer := []KeySource{{From: FromBearer}}
	tests := []struct {
		name    string
		sources []KeySource
		r       *http.Request
		wantKey string
		want    extractResult
	}{
		{"bearer", bearer, newRequest("/", "Authorization: Bearer K1"), "K1", keyFound},
		{"bearer scheme lower case", bearer, newRequest("/", "Authorization: bearer K1"), "K1", keyFound},
		{"bearer scheme upper case", bearer, newRequest("/", "Authorization: BEARER K1"), "K1", keyFound},
		{"bearer extra spaces", bearer, newRequest("/", "Authorization: Bearer    K1   "), "K1", keyFound},
		{"basic is not bearer", bearer, newRequest("/", "Authorization: Basic dXNlcjpwYXNz"), "", keyAbsent},
		{"scheme without token", bearer, newRequest("/", "Authorization: Bearer"), "", keyAbsent},
		{"scheme glued to token", bearer, newRequest("/", "Authorization: BearerK1"), "", keyAbsent},
		{"bearer beside basic", bearer, newRequest("/", "Authorization: Basic dXNlcjpwYXNz", "Authorization: Bearer K1"), "K1", keyFound},
		{"two bearer values", bearer, newRequest("/", "Authorization: Bearer K1", "Authorization: Bearer K2"), "", keyAmbiguous},
		{"two equal bearer values", bearer, newRequest("/", "Authorization: Bearer K1", "Authorization: bearer K1"), "", keyAmbiguous},

		{"header", header, newRequest("/", "X-API-Key: K1"), "K1", keyFound},
		{"header trimmed", header, newRequest("/", "X-Api-Key:   K1  "), "K1", keyFound},
		{"two headers", header, newRequest("/", "X-API-Key: K1", "X-Api-Key: K2"), "", keyAmbiguous},
		{"two headers, one empty", header, newRequest("/", "X-API-Key: K1", "X-Api-Key: "), "", keyAmbiguous},
		{"empty header is absent", header, newRequest("/", "X-API-Key: "), "", keyAbsent},

		{"query", query, newRequest("/p?a=1&api_key=K1&b=2"), "K1", keyFound},
		{"query value percent-encoded", query, newRequest("/p?api_key=kg%5FK1"), "kg_K1", keyFound},
		{"query name percent-encoded", query, newRequest("/p?%61pi%5Fkey=K1"), "K1", keyFound},
		{"query similar names ignored", query, newRequest("/p?api_key2=K2&xapi_key=K3&api_key=K1"), "K1", keyFound},
		{"two query params", query, newRequest("/p?api_key=K1&api_key=K2"), "", keyAmbiguous},
		{"two query params, one encoded", query, newRequest("/p?api_key=K1&%61pi_key=K2"), "", keyAmbiguous},
		{"two query params, one empty", query, newRequest("/p?api_key=&api_key=K1"), "", keyAmbiguous},
		{"empty query param is absent", query, newRequest("/p?api_key="), "", keyAbsent},
		{"query param without value is absent", query, newRequest("/p?api_key"), "", keyAbsent},
		{"no query", query, newRequest("/p"), "", keyAbsent},

		{"cookie", cookie, newRequest("/", "Cookie: a=1; api_key=K1; b=2"), "K1", keyFound},
		{"quoted cookie", cookie, newRequest("/", `Cookie: api_key="K1"`), "K1", keyFound},
		{"two cookies in one line", cookie, newRequest("/", "Cookie: api_key=K1; api_key=K2"), "", keyAmbiguous},
		{"two cookies in two lines", cookie, newRequest("/", "Cookie: api_key=K1", "Cookie: api_key=K2"), "", keyAmbiguous},
		{"empty cookie is absent", cookie, newRequest("/", "Cookie: api_key="), "", keyAbsent},
		{"other cookie only", cookie, newRequest("/", "Cookie: session=K1"), "", keyAbsent},

		{"first source wins: bearer", everySource, newRequest("/?api_key=Q", "Authorization: Bearer B", "X-API-Key: H", "Cookie: api_key=C"), "B", keyFound},
		{"first source wins: header", everySource, newRequest("/?api_key=Q", "X-API-Key: H", "Cookie: api_key=C"), "H", keyFound},
		{"first source wins: query", everySource, newRequest("/?api_key=Q", "Cookie: api_key=C"), "Q", keyFound},
		{"first source wins: cookie", everySource, newRequest("/", "Authorization: Basic x", "Cookie: api_key=C"), "C", keyFound},
		{"empty source falls through", everySource, newRequest("/?api_key=", "X-API-Key: ", "Cookie: api_key=C"), "C", keyFound},
		// A later source is never consulted once an earlier one is
		// ambiguous: otherwise a client could pick which key is checked.
		{"ambiguity stops the search", everySource, newRequest("/?api_key=Q", "X-API-Key: H1", "X-API-Key: H2"), "", keyAmbiguous},
		{"order as configured", []KeySource{{From: FromCookie, Name: "c"}, {From: FromBearer}}, newRequest("/", "Authorization: Bearer B", "Cookie: c=C"), "C", keyFound},
		{"absent everywhere", everySource, newRequest("/?other=1", "X-Other: 1", "Cookie: other=1"), "", keyAbsent},
		{"no sources", nil, newRequest("/", "Authorization: Bearer B"), "", keyAbsent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, src, got := extract(tt.r, tt.sources)
			if key != tt.wantKey || got != tt.want {
				t.Errorf("extract = %q, %v; want %q, %v", key, got, tt.wantKey, tt.want)
			}
			// The source named is the one that held the key.
			if got == keyFound {
				if alone, _, _ := extract(tt.r, tt.sources[src:src+1]); alone != key {
					t.Errorf("extract named source %s, which holds %q, not %q", tt.sources[src], alone, key)
				}
			} else if got == keyAbsent && src != -1 {
				t.Errorf("extract named source %d for an absent key", src)
			}
		})
	}
}

func TestStrip(t *testing.T) {
	tests := []struct {
		name    string
		sources []KeySource
		r       *http.Request
		// wantHeader lists the headers that must be present afterwards
		// (nil value: absent); wantURI is the RequestURI, "" if unchanged.
		wantHeader http.Header
		wantQuery  string
		wantURI    string
	}{
		{
			name:       "bearer removed",
			sources:    []KeySource{{From: FromBearer}},
			r:          newRequest("/p", "Authorization: Bearer K1"),
			wantHeader: http.Header{"Authorization": nil},
		},
		{
			name:       "basic kept, bearer removed",
			sources:    []KeySource{{From: FromBearer}},
			r:          newRequest("/p", "Authorization: Basic dXNlcjpwYXNz", "Authorization: bearer K1", "Authorization: BEARER K2"),
			wantHeader: http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}},
		},
		{
			name:       "non-bearer untouched",
			sources:    []KeySource{{From: FromBearer}},
			r:          newRequest("/p", "Authorization: Basic a", "Authorization: Token b"),
			wantHeader: http.Header{"Authorization": {"Basic a", "Token b"}},
		},
		{
			name:       "every copy of the header removed",
			sources:    []KeySource{{From: FromHeader, Name: "X-Api-Key"}},
			r:          newRequest("/p", "X-API-Key: K1", "x-api-key: K2", "X-Other: keep"),
			wantHeader: http.Header{"X-Api-Key": nil, "X-Other": {"keep"}},
		},
		{
			// Other parameters keep their order, encoding and duplicates:
			// a legacy upstream may care.
			name:      "query parameter removed, rest byte for byte",
			sources:   []KeySource{{From: FromQuery, Name: "api_key"}},
			r:         newRequest("/p/a%20b?z=1&api_key=K1&b=%20x+y&a=2&a=1&%61pi_key=K2&flag&api_key2=v"),
			wantQuery: "z=1&b=%20x+y&a=2&a=1&flag&api_key2=v",
			wantURI:   "/p/a%20b?z=1&b=%20x+y&a=2&a=1&flag&api_key2=v",
		},
		{
			name:      "only parameter removed",
			sources:   []KeySource{{From: FromQuery, Name: "api_key"}},
			r:         newRequest("/p?api_key=K1"),
			wantQuery: "",
			wantURI:   "/p",
		},
		{
			name:      "query without the parameter untouched",
			sources:   []KeySource{{From: FromQuery, Name: "api_key"}},
			r:         newRequest("/p?b=2&a=1"),
			wantQuery: "b=2&a=1",
			wantURI:   "/p?b=2&a=1",
		},
		{
			name:       "cookie removed, others kept",
			sources:    []KeySource{{From: FromCookie, Name: "api_key"}},
			r:          newRequest("/p", "Cookie: a=1; api_key=K1; b=2", "Cookie: api_key=K2; c=3"),
			wantHeader: http.Header{"Cookie": {"a=1; b=2; c=3"}},
		},
		{
			name:       "only cookie removed",
			sources:    []KeySource{{From: FromCookie, Name: "api_key"}},
			r:          newRequest("/p", "Cookie: api_key=K1"),
			wantHeader: http.Header{"Cookie": nil},
		},
		{
			name:       "similar cookie names kept",
			sources:    []KeySource{{From: FromCookie, Name: "api_key"}},
			r:          newRequest("/p", "Cookie: api_key2=x; xapi_key=y; api_key=K1"),
			wantHeader: http.Header{"Cookie": {"api_key2=x; xapi_key=y"}},
		},
		{
			// The key came from one source; a second key smuggled in any
			// other configured source must not reach the upstream either.
			name:    "every configured source stripped",
			sources: everySource,
			r: newRequest("/p?x=1&api_key=Q", "Authorization: Bearer B", "Authorization: Basic keep",
				"X-API-Key: H", "Cookie: api_key=C; s=keep", "X-Other: keep"),
			wantHeader: http.Header{
				"Authorization": {"Basic keep"},
				"X-Api-Key":     nil,
				"Cookie":        {"s=keep"},
				"X-Other":       {"keep"},
			},
			wantQuery: "x=1",
			wantURI:   "/p?x=1",
		},
		{
			name:       "unconfigured sources untouched",
			sources:    []KeySource{{From: FromHeader, Name: "X-Api-Key"}},
			r:          newRequest("/p?api_key=Q", "Authorization: Bearer B", "Cookie: api_key=C", "X-API-Key: H"),
			wantHeader: http.Header{"Authorization": {"Bearer B"}, "Cookie": {"api_key=C"}, "X-Api-Key": nil},
			wantQuery:  "api_key=Q",
			wantURI:    "/p?api_key=Q",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rawQuery, uri := tt.r.URL.RawQuery, tt.r.RequestURI
			strip(tt.r, tt.sources)
			for name, want := range tt.wantHeader {
				if got := tt.r.Header[name]; !reflect.DeepEqual(got, want) {
					t.Errorf("header %s = %q, want %q", name, got, want)
				}
			}
			if tt.wantURI == "" {
				if tt.r.URL.RawQuery != rawQuery || tt.r.RequestURI != uri {
					t.Errorf("URL changed: query %q, RequestURI %q", tt.r.URL.RawQuery, tt.r.RequestURI)
				}
				return
			}
			if tt.r.URL.RawQuery != tt.wantQuery {
				t.Errorf("RawQuery = %q, want %q", tt.r.URL.RawQuery, tt.wantQuery)
			}
			if tt.r.RequestURI != tt.wantURI {
				t.Errorf("RequestURI = %q, want %q", tt.r.RequestURI, tt.wantURI)
			}
			if got := tt.r.URL.RequestURI(); got != tt.wantURI {
				t.Errorf("URL.RequestURI() = %q, want %q", got, tt.wantURI)
			}
		})
	}
}

// TestStripRemovesWhatExtractFinds ties the two together: whatever key
// extract accepts from a request, strip must leave no trace of it.
func TestStripRemovesWhatExtractFinds(t *testing.T) {
	requests := []*http.Request{
		newRequest("/", "Authorization: Bearer SECRET"),
		newRequest("/", "Authorization: bEaReR   SECRET  "),
		newRequest("/", "X-API-Key: SECRET"),
		newRequest("/?a=1&api_key=SECRET&b=2"),
		newRequest("/?a=1&%61pi_key=SECRET"),
		newRequest("/?api_key=SECR%45T"),
		newRequest("/", "Cookie: a=1; api_key=SECRET"),
		newRequest("/", `Cookie: api_key="SECRET"; a=1`),
		// net/http trims blanks around cookie names; strip must too.
		newRequest("/", "Cookie: api_key =SECRET"),
		newRequest("/", "Cookie: a=1;  api_key\t=SECRET ; b=2"),
	}
	for _, r := range requests {
		key, _, found := extract(r, everySource)
		if found != keyFound || key != "SECRET" {
			t.Fatalf("%s %v: extract = %q, %v", r.URL, r.Header, key, found)
		}
		strip(r, everySource)
		if key, _, found := extract(r, everySource); found != keyAbsent {
			t.Errorf("after strip, extract still finds %q (%v)", key, found)
		}
		for name, vals := range r.Header {
			for _, v := range vals {
				if strings.Contains(v, "SECRET") {
					t.Errorf("header %s still holds the key: %q", name, v)
				}
			}
		}
		if strings.Contains(r.RequestURI, "SECR") || strings.Contains(r.URL.RawQuery, "SECR") {
			t.Errorf("URL still holds the key: %q", r.RequestURI)
		}
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BeArEr abc", "abc", true},
		{"Bearer   abc  ", "abc", true},
		{"Basic abc", "", false},
		{"Token abc", "", false},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearerabc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := bearerToken(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestKeySourceValidate(t *testing.T) {
	tests := []struct {
		in       KeySource
		wantName string // after canonicalisation
		wantErr  string // "" for valid
	}{
		{KeySource{From: FromBearer}, "", ""},
		{KeySource{From: FromHeader, Name: "x-api-key"}, "X-Api-Key", ""},
		{KeySource{From: FromHeader, Name: "X-API-KEY"}, "X-Api-Key", ""},
		{KeySource{From: FromHeader, Name: "apikey"}, "Apikey", ""},
		{KeySource{From: FromQuery, Name: "api_key"}, "api_key", ""},
		{KeySource{From: FromQuery, Name: "Api-Key"}, "Api-Key", ""}, // not canonicalised: query names are case-sensitive
		{KeySource{From: FromCookie, Name: "Session_Key"}, "Session_Key", ""},

		{KeySource{From: FromBearer, Name: "x"}, "", "'bearer' takes no name"},
		{KeySource{From: FromHeader}, "", "needs a valid header name"},
		{KeySource{From: FromHeader, Name: "X API Key"}, "", "needs a valid header name"},
		{KeySource{From: FromHeader, Name: "X-Key:"}, "", "needs a valid header name"},
		{KeySource{From: FromHeader, Name: "Ключ"}, "", "needs a valid header name"},
		{KeySource{From: FromQuery}, "", "'query' needs a parameter name"},
		{KeySource{From: FromQuery, Name: "a&b"}, "", "'query' needs a parameter name"},
		{KeySource{From: FromQuery, Name: "a=b"}, "", "'query' needs a parameter name"},
		{KeySource{From: FromQuery, Name: "a#b"}, "", "'query' needs a parameter name"},
		{KeySource{From: FromQuery, Name: "a?b"}, "", "'query' needs a parameter name"},
		{KeySource{From: FromQuery, Name: "a;b"}, "", "'query' needs a parameter name"},
		{KeySource{From: FromQuery, Name: "a b"}, "", "'query' needs a parameter name"},
		{KeySource{From: FromCookie}, "", "needs a valid cookie name"},
		{KeySource{From: FromCookie, Name: "a;b"}, "", "needs a valid cookie name"},
		{KeySource{From: FromCookie, Name: "a=b"}, "", "needs a valid cookie name"},
		{KeySource{Name: "x"}, "", "has no 'from'"},
		{KeySource{From: "nope", Name: "x"}, "", `unknown key source "nope"`},
		{KeySource{From: "Bearer"}, "", `unknown key source "Bearer"`},
	}
	for _, tt := range tests {
		s := tt.in
		err := s.validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%+v: error %v, want one containing %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && s.Name != tt.wantName:
			t.Errorf("%+v: name = %q, want %q", tt.in, s.Name, tt.wantName)
		}
	}
}

func TestKeySourceString(t *testing.T) {
	for in, want := range map[KeySource]string{
		{From: FromBearer}:                    "bearer",
		{From: FromHeader, Name: "X-Api-Key"}: "header X-Api-Key",
		{From: FromQuery, Name: "k"}:          "query k",
		{From: FromCookie, Name: "c"}:         "cookie c",
	} {
		if got := in.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", in, got, want)
		}
	}
}
