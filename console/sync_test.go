package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// lateSync is the console's Syncer, pointed at the feed once the test's
// node exists (the console is built first).
type lateSync struct{ f atomic.Pointer[nodelink.Feed] }

func (l *lateSync) WaitApplied(ctx context.Context, want map[string]int64) error {
	return l.f.Load().WaitApplied(ctx, want)
}

// TestConsoleReadYourWrites: a credential the console shows works on the
// node the moment the page arrives, and a disabled, rotated or deleted one
// (or an ACL change) is in force on the node as soon as the answer comes;
// no polling of the node.
func TestConsoleReadYourWrites(t *testing.T) {
	ls := &lateSync{}
	e := newEnv(t, func(d *Deps) { d.Sync = ls })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	feed := nodelink.NewFeed(e.svc, log)
	go feed.Run(ctx)
	ls.f.Store(feed)
	node, _, err := e.svc.EnsureNode(ctx, "test-node", map[string]string{"mqtt": "mqtt://localhost:1883"})
	if err != nil {
		t.Fatal(err)
	}
	st := configsync.NewState()
	cl, err := configsync.NewClient(configsync.Options{Source: nodelink.LocalSource{Hub: api.NewHub(api.Deps{Log: log, Tenancy: e.svc, Feed: feed}), NodeID: node.ID}, State: st, Dir: t.TempDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cl.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	c := e.client(t)
	orgID := c.signup("ryw@example.com", "RYW")
	id := c.createInstance(orgID, "home")
	waitRunning(t, e, orgID, id)
	base := "/orgs/" + orgID + "/instances/" + id + "/credentials"
	auth := func(user, pw string) configsync.AuthResult {
		_, r := st.CheckPassword(id, user, []byte(pw), "dev-1", time.Now())
		return r
	}
	c.get(base)
	for i := range 10 {
		user := "dev-" + string(rune('a'+i))
		res, doc := c.post(base, url.Values{"username": {user}})
		pw := strings.TrimSpace(doc.Find(`[data-testid="new-password"]`).Text())
		if res.StatusCode != http.StatusCreated || pw == "" {
			t.Fatalf("create: %d", res.StatusCode)
		}
		if r := auth(user, pw); r != configsync.AuthOK {
			t.Fatalf("round %d: credential shown by the console refused by the node: %v", i, r)
		}
		creds, _, err := e.svc.ListCredentials(ctx, orgID, id, tenancy.Page{Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		var credID string
		for _, cr := range creds {
			if cr.Username == user {
				credID = cr.ID
			}
		}
		c.post(base+"/"+credID+"/enabled", url.Values{"enabled": {"false"}})
		if r := auth(user, pw); r != configsync.AuthDisabled {
			t.Fatalf("round %d: disabled in the console, node says %v", i, r)
		}
		c.post(base+"/"+credID+"/enabled", url.Values{"enabled": {"true"}})
		_, doc = c.post(base+"/"+credID+"/rotate", nil)
		pw2 := strings.TrimSpace(doc.Find(`[data-testid="new-password"]`).Text())
		if auth(user, pw) == configsync.AuthOK || auth(user, pw2) != configsync.AuthOK {
			t.Fatalf("round %d: rotation not in force on the node when the page came", i)
		}
		c.post(base+"/"+credID+"/delete", nil)
		if auth(user, pw2) == configsync.AuthOK {
			t.Fatalf("round %d: deleted in the console, still accepted by the node", i)
		}
	}
	c.get("/orgs/" + orgID + "/instances/" + id + "/acl")
	c.post("/orgs/"+orgID+"/instances/"+id+"/acl", url.Values{"effect": {"deny"}, "action": {"all"}, "filter": {"secret/#"}})
	found := false
	for _, r := range st.ACL(id) {
		found = found || r.Filter == "secret/#"
	}
	if !found {
		t.Fatal("ACL rule added in the console not on the node when the page came")
	}
}
