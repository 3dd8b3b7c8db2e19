package caddymodule

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keygate/keygate/keystore"
)

// FuzzExtract sends arbitrary Authorization, X-API-Key, query and Cookie
// values through key extraction. Whatever extract finds, strip must
// remove: after strip no source may yield a key, or a second key could
// reach the upstream.
func FuzzExtract(f *testing.F) {
	const key = "kg_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBCCCCCC"
	f.Add("Bearer "+key, "", "", "")
	f.Add("bearer  "+key+" ", key, "a=1&api_key="+key+"&b=2", "x=1; api_key="+key)
	f.Add("Basic dXNlcjpwYXNz", key, "", "")
	f.Add("", "", "api%5Fkey="+url.QueryEscape(key), "")
	f.Add("", "", "api_key=1&api_key=2", "api_key=a; api_key=b")
	f.Add("", "", "", " api_key = "+key+" ;;")
	f.Add("Bearer", "", "%zz=1&api_key", `api_key="quoted"`)
	f.Fuzz(func(t *testing.T, auth, header, rawQuery, cookie string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/", RawQuery: rawQuery}}
		if auth != "" {
			r.Header["Authorization"] = strings.Split(auth, "\n")
		}
		if header != "" {
			r.Header["X-Api-Key"] = []string{header}
		}
		if cookie != "" {
			r.Header["Cookie"] = strings.Split(cookie, "\n")
		}
		got, src, res := extract(r, everySource)
		if res != keyFound && got != "" {
			t.Fatalf("extract returned %q with result %d", got, res)
		}
		// The oracle: each source on its own, written plainly, and the
		// first one that holds something decides.
		wantKey, wantSrc, want := "", -1, keyAbsent
		for i, one := range []func() (string, extractResult){
			func() (string, extractResult) {
				var toks []string
				for _, line := range r.Header["Authorization"] {
					if len(line) > 7 && strings.EqualFold(line[:7], "bearer ") {
						toks = append(toks, strings.TrimSpace(line[7:]))
					}
				}
				return single(toks, true)
			},
			func() (string, extractResult) {
				if header == "" {
					return "", keyAbsent
				}
				return single([]string{strings.TrimSpace(header)}, false)
			},
			func() (string, extractResult) {
				var vals []string
				for part := range strings.SplitSeq(rawQuery, "&") {
					k, v, _ := strings.Cut(part, "=")
					if uk, err := url.QueryUnescape(k); err != nil || uk != "api_key" || rawQuery == "" {
						continue
					}
					if uv, err := url.QueryUnescape(v); err == nil {
						v = uv
					}
					vals = append(vals, strings.TrimSpace(v))
				}
				return single(vals, false)
			},
			func() (string, extractResult) {
				var vals []string
				for _, c := range r.CookiesNamed("api_key") {
					vals = append(vals, c.Value)
				}
				return single(vals, false)
			},
		} {
			if k, res := one(); res != keyAbsent {
				wantKey, wantSrc, want = k, i, res
				break
			}
		}
		if res != want || (want != keyAbsent && src != wantSrc) || (want == keyFound && got != wantKey) {
			t.Fatalf("extract = %q from source %d (result %d), want %q from source %d (result %d)", got, src, res, wantKey, wantSrc, want)
		}
		strip(r, everySource)
		if again, _, res := extract(r, everySource); res != keyAbsent {
			t.Fatalf("after strip a source still yields %q (result %d); request %+v %q", again, res, r.Header, r.URL.RawQuery)
		}
	})
}

// single is what one source holding vals yields: nothing, one key, or
// ambiguity. An empty value counts as absent when it is the only one,
// except for a bearer token, whose scheme alone says a key was meant.
func single(vals []string, bearer bool) (string, extractResult) {
	switch {
	case len(vals) > 1:
		return "", keyAmbiguous
	case len(vals) == 0, vals[0] == "" && !bearer:
		return "", keyAbsent
	}
	return vals[0], keyFound
}

// FuzzCaddyfile feeds arbitrary options to the api_key block. Parsing must
// never panic; a block that parses must survive the configuration checks
// without panicking and round-trip through JSON unchanged, because Caddy
// runs the handler from the JSON the Caddyfile adapts to.
func FuzzCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"",
		"database sqlite:/tmp/k.db\npepper {env.KEYGATE_PEPPER}\nprefix acme_live",
		"from bearer\nfrom header X-API-Key\nfrom query api_key\nfrom cookie kg",
		"scopes a b\nscopes c:read",
		"id_header off\nowner_header X-Owner\nrealm \"my api\"",
		"handle_errors\nretry_after 10s\nstore_timeout 500ms\nmax_store_queries 4",
		"cache {\n size 10\n ttl 1m\n max_stale off\n negative_size 5\n negative_ttl 2s\n}",
		"cache {\n max_stale 1h\n}",
		"from\nfrom nope\nfrom bearer x\nprefix\nprefix a b",
		"max_store_queries -1\ncache {\n size 0\n}\nbogus",
		"failed_auth_limit 5/m burst 10\nfrom cookie c\nallowed_origins https://a.example",
		"failed_auth_limit off\nfailed_auth_limit 1/x burst",
		"failed_auth_limit 5/m delay 250ms burst 3\nfailed_auth_limit 1/s delay",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, block string) {
		tokens, err := caddyfile.Tokenize([]byte("api_key {\n"+block+"\n}\n"), "Caddyfile")
		if err != nil {
			return
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		raw, err := json.Marshal(&h)
		if err != nil {
			t.Fatalf("marshalling parsed config: %v", err)
		}
		var back Handler
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("config does not survive JSON: %v\n%s", err, raw)
		}
		if !reflect.DeepEqual(h, back) {
			t.Fatalf("JSON round trip changed the config:\n%+v\n%+v", h, back)
		}
		h.validateConfig()
	})
}

// FuzzIdentity sends arbitrary Connection headers and request trailers
// (names and values, declared or not) with an accepted key. Whatever they
// say, after reverse_proxy's hop-by-hop removal the upstream must see the
// trusted identity headers as set, and no trailer may carry an identity
// header, Authorization or a header source.
func FuzzIdentity(f *testing.F) {
	f.Add("x-api-key-id, X-Api-Key-Owner", "X-Api-Key-Id", "X-Api-Key-Id\nx-who", "admin")
	f.Add("close,,  X-WHO ,keep-alive", "", "Authorization\nX-Api-Key", "Bearer kg_x")
	f.Add("", "X-Checksum, X-Api-Key-Owner", "X-Checksum", "1")
	f.Fuzz(func(t *testing.T, connection, declared, sent, value string) {
		h := &Handler{IDHeader: "X-Who", Sources: []KeySource{{From: FromBearer}, {From: FromHeader, Name: "X-API-Key"}}}
		if err := h.validateConfig(); err != nil {
			t.Fatal(err)
		}
		h.format, _ = keystore.NewFormat("")
		key := &keystore.Key{ID: "AAAAAAAAAAAA", Owner: "acme"}
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header["Connection"] = strings.Split(connection, "\n")
		var trailer http.Header
		if declared != "" {
			trailer = http.Header{}
			for name := range strings.SplitSeq(declared, ",") {
				trailer[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))] = nil
			}
		}
		r.Trailer = trailer
		sentTrailer := http.Header{}
		for name := range strings.SplitSeq(sent, "\n") {
			sentTrailer[textproto.CanonicalMIMEHeaderKey(name)] = []string{value}
		}
		if trailer != nil {
			r.Body = &trailerBody{Reader: strings.NewReader("body"), trailer: trailer, sent: sentTrailer}
		}
		h.admit(r, &keyRequest{key: key}, "")
		out := r.Header.Clone()
		for _, v := range out["Connection"] {
			for tok := range strings.SplitSeq(v, ",") {
				out.Del(textproto.TrimString(tok))
			}
		}
		if got := out.Values("X-Who"); len(got) != 1 || got[0] != key.ID {
			t.Fatalf("X-Who after hop-by-hop removal = %q (Connection %q)", got, connection)
		}
		if got := out.Values("X-Api-Key-Owner"); len(got) != 1 || got[0] != "acme" {
			t.Fatalf("X-Api-Key-Owner after hop-by-hop removal = %q (Connection %q)", got, connection)
		}
		if r.Body != nil {
			io.ReadAll(r.Body)
		}
		for name := range r.Trailer {
			if slices.Contains(h.trailerBlocked, textproto.CanonicalMIMEHeaderKey(name)) {
				t.Fatalf("trailer %q survives (declared %q, sent %q)", name, declared, sent)
			}
		}
	})
}
