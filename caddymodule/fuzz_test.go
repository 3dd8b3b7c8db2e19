package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
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
		got, res := extract(r, everySource)
		if res != keyFound && got != "" {
			t.Fatalf("extract returned %q with result %d", got, res)
		}
		strip(r, everySource)
		if again, res := extract(r, everySource); res != keyAbsent {
			t.Fatalf("after strip a source still yields %q (result %d); request %+v %q", again, res, r.Header, r.URL.RawQuery)
		}
	})
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
