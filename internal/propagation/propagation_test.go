// Package propagation measures how fast a change made through the REST API
// reaches a data-plane node: real Postgres, the real API over HTTP, the
// config feed's LISTEN/NOTIFY, and a node following the watch stream over
// HTTP into its configsync.State.
package propagation

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/api"
	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type rig struct {
	base, token, org, inst string
	state                  *configsync.State
	mu                     sync.Mutex
	seen                   map[string]chan struct{} // credential ID → closed when the node applied a change to it
	passwords              map[string]string        // credential ID → password
}

func setup(tb testing.TB) *rig {
	tb.Helper()
	db := pgtest.New(tb)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	svc := tenancy.NewService(db.Pool, log, tenancy.WithPasswordParams(tenancy.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1}),
		tenancy.WithPlans(billing.NewPlans(db.Pool)))
	feed := nodelink.NewFeed(svc, log)
	go feed.Run(ctx)
	router := api.NewRouter(api.Deps{Log: log, Tenancy: svc, Billing: billing.NewService(db.Pool, nil, svc, log), DB: db.Pool, Feed: feed})
	srv := httptest.NewServer(router)
	tb.Cleanup(srv.Close)
	// Cleanups run last-first: stop the node's watch before closing the server.
	tb.Cleanup(cancel)

	node, tok, err := svc.CreateNode(ctx, "bench-node")
	if err != nil {
		tb.Fatal(err)
	}
	r := &rig{base: srv.URL, state: configsync.NewState(), seen: map[string]chan struct{}{}, passwords: map[string]string{}}
	r.state.OnChange(func(ch configsync.Change) {
		if ch.CredentialID == "" {
			return
		}
		r.mu.Lock()
		if c, ok := r.seen[ch.CredentialID]; ok {
			close(c)
			delete(r.seen, ch.CredentialID)
		}
		r.mu.Unlock()
	})
	client, err := configsync.NewClient(configsync.Options{
		Source: &nodelink.HTTPSource{BaseURL: srv.URL, NodeID: node.ID, Token: tok},
		State:  r.state, Dir: tb.TempDir(), Log: log,
		Endpoints: map[string]string{"mqtt": "mqtt://localhost:1883"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { client.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done }) // before its directory is removed
	// The node's first heartbeat makes it eligible for placement.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := svc.NodeByID(ctx, node.ID)
		if err == nil && n.LastSeenAt != nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatal("node never heartbeated")
		}
		time.Sleep(20 * time.Millisecond)
	}

	var s struct {
		AccessToken string `json:"access_token"`
		Org         struct{ ID string }
	}
	r.call(tb, "POST", "/v1/signup", map[string]any{"email": "bench@example.com", "password": "correct horse battery", "org_name": "B"}, 201, &s)
	r.token, r.org = s.AccessToken, s.Org.ID
	var inst struct{ ID string }
	r.call(tb, "POST", "/v1/orgs/"+r.org+"/instances", map[string]any{"name": "bench"}, 201, &inst)
	r.inst = inst.ID
	return r
}

func (r *rig) call(tb testing.TB, method, path string, body any, want int, out any) {
	tb.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, r.base+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		tb.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			tb.Fatal(err)
		}
	}
}

// created creates a credential through the API and waits until the node
// authenticates it, so later changes are timed alone.
func (r *rig) created(tb testing.TB, username string) (id string) {
	tb.Helper()
	var c struct{ ID, Password string }
	r.call(tb, "POST", "/v1/orgs/"+r.org+"/instances/"+r.inst+"/credentials", map[string]any{"username": username}, 201, &c)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, res := r.state.CheckPassword(r.inst, username, []byte(c.Password), "x", time.Now()); res == configsync.AuthOK {
			r.passwords[c.ID] = c.Password
			return c.ID
		}
		if time.Now().After(deadline) {
			tb.Fatalf("credential %s never reached the node", c.ID)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// change makes one credential change through the API and returns the time
// from the 2xx answer to the node having applied it.
func (r *rig) change(tb testing.TB, credID string, enabled bool) time.Duration {
	tb.Helper()
	done := make(chan struct{})
	r.mu.Lock()
	r.seen[credID] = done
	r.mu.Unlock()
	r.call(tb, "PATCH", "/v1/orgs/"+r.org+"/instances/"+r.inst+"/credentials/"+credID, map[string]any{"enabled": enabled}, 200, nil)
	ok := time.Now()
	select {
	case <-done:
		return time.Since(ok)
	case <-time.After(10 * time.Second):
		tb.Fatalf("change to %s never reached the node", credID)
		return 0
	}
}

// TestChangesReachTheNode checks the rig itself: a credential created and
// disabled through the API is what the node's state enforces.
func TestChangesReachTheNode(t *testing.T) {
	r := setup(t)
	id := r.created(t, "d")
	pw := []byte(r.passwords[id])
	r.change(t, id, false)
	if _, res := r.state.CheckPassword(r.inst, "d", pw, "x", time.Now()); res != configsync.AuthDisabled {
		t.Fatalf("after disable: %v", res)
	}
	r.change(t, id, true)
	if _, res := r.state.CheckPassword(r.inst, "d", pw, "x", time.Now()); res != configsync.AuthOK {
		t.Fatalf("after enable: %v", res)
	}
}

// BenchmarkConfigPropagation: 1,000 sequential credential changes, each
// timed from the API's 2xx to the node's applied revision (p50/p99 in ms).
func BenchmarkConfigPropagation(b *testing.B) {
	r := setup(b)
	id := r.created(b, "d")
	const n = 1000
	b.ResetTimer()
	for range b.N {
		lat := make([]time.Duration, n)
		for i := range lat {
			lat[i] = r.change(b, id, i%2 == 1)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[n-1].Microseconds())/1000, "max-ms")
	}
}
