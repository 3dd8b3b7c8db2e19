package tests

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestGlobalKeygateOption: the keygate global option names the store and
// pepper once for every site; the sites share one store (one watch), and
// a site's own options still win.
func TestGlobalKeygateOption(t *testing.T) {
	forEachStore(t, func(t *testing.T, sb *sandbox) {
		database := "sqlite:" + sb.sqlitePath()
		pepper := ""
		if sb.kind == postgresStore {
			database, pepper = sb.dsn, "\t\tpepper {env.KEYGATE_PEPPER}\n"
		}
		k := sb.createKey("shared")
		up := newUpstream(t)
		g := newGateway(t, sb)
		g.globals = fmt.Sprintf("\tkeygate {\n\t\tdatabase %s\n%s\t}\n", database, pepper)
		second := freePort(t)
		other := freePort(t)
		g.start(g.site("\tapi_key\n\treverse_proxy "+up.hostPort())+
			siteBlock(second, "\tapi_key\n\treverse_proxy "+up.hostPort())+
			// A site with a store of its own: the global one does not apply.
			siteBlock(other, fmt.Sprintf("\tapi_key {\n\t\tdatabase sqlite:%s/other.db\n\t}\n\trespond ok", sb.dir)),
			second, other)

		for _, url := range []string{g.url, fmt.Sprintf("http://127.0.0.1:%d", second)} {
			wantUpstream(t, "a key on "+url, bearer(t, url+"/", k.Key))
		}
		wantStatus(t, "the key on the site with its own store", bearer(t, fmt.Sprintf("http://127.0.0.1:%d/", other), k.Key), http.StatusUnauthorized)
		if n := strings.Count(g.log(), `"msg":"watching key store for changes","database":"`+keystore.RedactDSN(database)); n != 1 {
			t.Errorf("the global store was opened %d times, want once; log:\n%s", n, g.log())
		}
	})
}
