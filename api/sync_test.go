package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/nodelink"
)

type syncState struct {
	ConfigRevision  int64 `json:"config_revision"`
	AppliedRevision int64 `json:"applied_revision"`
	InSync          bool  `json:"in_sync"`
}

func revisionHeader(t testing.TB, r *resp) int64 {
	t.Helper()
	v, err := strconv.ParseInt(r.header.Get("Aerie-Config-Revision"), 10, 64)
	if err != nil || v <= 0 {
		t.Fatalf("Aerie-Config-Revision %q (status %d)", r.header.Get("Aerie-Config-Revision"), r.status)
	}
	return v
}

// TestReadYourWrites: config changes answer with their revision; with
// Prefer: wait the answer comes only once the node has applied the change
// (the credential is usable, or refused, the moment the client reads the
// answer); the instance shows its sync state.
func TestReadYourWrites(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "ryw@example.com", "RYW")
	inst := e.createInstance(t, s.AccessToken, s.Org.ID, "site")
	base := "/v1/orgs/" + s.Org.ID + "/instances/" + inst.ID
	wait := map[string]string{"Prefer": "wait=5"}

	// Without Prefer: the header, no waiting promised.
	r := e.do(t, req{method: "POST", path: base + "/credentials", token: s.AccessToken, body: map[string]any{"username": "plain"}}).expect(t, 201)
	revisionHeader(t, r)
	if r.header.Get("Preference-Applied") != "" {
		t.Fatalf("Preference-Applied without Prefer: %q", r.header.Get("Preference-Applied"))
	}
	// Reads carry no revision.
	if h := e.do(t, req{method: "GET", path: base, token: s.AccessToken}).expect(t, 200).header.Get("Aerie-Config-Revision"); h != "" {
		t.Fatalf("GET answered Aerie-Config-Revision %q", h)
	}

	for i := range 20 {
		var c credential
		r := e.do(t, req{method: "POST", path: base + "/credentials", token: s.AccessToken, header: wait,
			body: map[string]any{"username": "dev" + strconv.Itoa(i)}}).expect(t, 201)
		r.decode(t, &c)
		rev := revisionHeader(t, r)
		if got := r.header.Get("Preference-Applied"); got != "wait=5" {
			t.Fatalf("Preference-Applied %q", got)
		}
		if res := nodeAuth(inst.ID, c.Username, c.Password)(e.state); res != configsync.AuthOK {
			t.Fatalf("try %d: created credential refused by the node right after the answer: %v", i, res)
		}
		if e.state.Revision() < rev {
			t.Fatalf("node at revision %d, answer said %d", e.state.Revision(), rev)
		}
		r = e.do(t, req{method: "PATCH", path: base + "/credentials/" + c.ID, token: s.AccessToken, header: wait,
			body: map[string]any{"enabled": false}}).expect(t, 200)
		revisionHeader(t, r)
		if res := nodeAuth(inst.ID, c.Username, c.Password)(e.state); res == configsync.AuthOK {
			t.Fatalf("try %d: disabled credential still accepted by the node right after the answer", i)
		}
	}
	var c credential
	e.do(t, req{method: "POST", path: base + "/credentials", token: s.AccessToken, header: wait, body: map[string]any{"username": "rot"}}).
		expect(t, 201).decode(t, &c)
	var rot credential
	e.do(t, req{method: "POST", path: base + "/credentials/" + c.ID + "/rotate", token: s.AccessToken, header: wait}).expect(t, 200).decode(t, &rot)
	if nodeAuth(inst.ID, c.Username, c.Password)(e.state) == configsync.AuthOK || nodeAuth(inst.ID, c.Username, rot.Password)(e.state) != configsync.AuthOK {
		t.Fatal("rotation not applied on the node when the answer came")
	}
	r = e.do(t, req{method: "DELETE", path: base + "/credentials/" + c.ID, token: s.AccessToken, header: wait}).expect(t, 204)
	last := revisionHeader(t, r)
	if nodeAuth(inst.ID, c.Username, rot.Password)(e.state) == configsync.AuthOK {
		t.Fatal("deleted credential still accepted by the node")
	}
	var got syncState
	e.do(t, req{method: "GET", path: base, token: s.AccessToken}).expect(t, 200).decode(t, &got)
	if got.ConfigRevision != last || got.AppliedRevision < last || !got.InSync {
		t.Fatalf("instance sync state %+v, want config_revision %d applied and in sync", got, last)
	}

	// An instance created with Prefer: wait is answered as it is once its
	// node applied it: running, not provisioning; the ETag is the one a
	// GET gives.
	for i := range 3 { // Free allows 5 instances before email verification
		var created struct{ ID, Status string }
		r := e.do(t, req{method: "POST", path: "/v1/orgs/" + s.Org.ID + "/instances", token: s.AccessToken, header: wait,
			body: map[string]any{"name": "waited-" + strconv.Itoa(i)}}).expect(t, 201)
		r.decode(t, &created)
		if r.header.Get("Preference-Applied") != "wait=5" || created.Status != "running" {
			t.Fatalf("instance created with Prefer: wait answered %+v (Preference-Applied %q), want running",
				created, r.header.Get("Preference-Applied"))
		}
		g := e.do(t, req{method: "GET", path: "/v1/orgs/" + s.Org.ID + "/instances/" + created.ID, token: s.AccessToken}).expect(t, 200)
		if g.header.Get("ETag") != r.header.Get("ETag") {
			t.Fatalf("ETag %q after the wait, GET gives %q", r.header.Get("ETag"), g.header.Get("ETag"))
		}
	}
}

// TestReadYourWritesTimeout: a node that does not apply the change within
// the wait gets the client a 202 with the revision (and the same body), and
// the instance reads as not in sync.
func TestReadYourWritesTimeout(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "late@example.com", "Late")
	e.createInstance(t, s.AccessToken, s.Org.ID, "first") // the harness node now has one instance
	// A second, live node that never follows its config: it has fewer
	// instances, so the next one lands there.
	var n struct{ ID, Token string }
	e.do(t, req{method: "POST", path: "/v1/admin/nodes", token: operatorToken, body: map[string]any{"name": "silent"}}).expect(t, 201).decode(t, &n)
	if err := e.svc.NodeHeartbeat(t.Context(), n.ID, nodelink.Ack{Revision: -1}); err != nil {
		t.Fatal(err)
	}
	var inst instance
	e.do(t, req{method: "POST", path: "/v1/orgs/" + s.Org.ID + "/instances", token: s.AccessToken, body: map[string]any{"name": "stuck"}}).
		expect(t, 201).decode(t, &inst)
	if inst.NodeID != n.ID {
		t.Fatalf("instance placed on %s, want the silent node %s", inst.NodeID, n.ID)
	}
	base := "/v1/orgs/" + s.Org.ID + "/instances/" + inst.ID
	start := time.Now()
	r := e.do(t, req{method: "POST", path: base + "/credentials", token: s.AccessToken, header: map[string]string{"Prefer": "wait=1"},
		body: map[string]any{"username": "dev"}}).expect(t, http.StatusAccepted)
	took := time.Since(start)
	rev := revisionHeader(t, r)
	var c credential
	r.decode(t, &c)
	if c.Password == "" || c.Username != "dev" {
		t.Fatalf("202 body %s: want the created credential with its password", r.body)
	}
	if took < time.Second || took > 5*time.Second {
		t.Fatalf("answered after %s, want about the 1 s wait", took)
	}
	var got syncState
	e.do(t, req{method: "GET", path: base, token: s.AccessToken}).expect(t, 200).decode(t, &got)
	if got.ConfigRevision != rev || got.InSync || got.AppliedRevision >= rev {
		t.Fatalf("instance sync state %+v, want config_revision %d not applied", got, rev)
	}
	// The node catches up: an ack makes it in sync, and a waiting request
	// is answered on the ack, not at its bound.
	done := make(chan *resp, 1)
	go func() {
		done <- e.do(t, req{method: "PATCH", path: base + "/credentials/" + c.ID, token: s.AccessToken, header: map[string]string{"Prefer": "wait=20"},
			body: map[string]any{"enabled": false}})
	}()
	time.Sleep(300 * time.Millisecond)
	ackAt := time.Now()
	var pr *resp
	for pr == nil {
		last, _, err := e.svc.ConfigRevision(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.NodeHeartbeat(t.Context(), n.ID, nodelink.Ack{Revision: last}); err != nil {
			t.Fatal(err)
		}
		select {
		case pr = <-done:
		case <-time.After(100 * time.Millisecond):
		}
	}
	pr.expect(t, 200)
	if d := time.Since(ackAt); d > 2*time.Second {
		t.Fatalf("the waiting request was answered %s after the node's ack", d)
	}
	// (Its first ack made the instance running: one more change to apply.)
	last, _, err := e.svc.ConfigRevision(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.NodeHeartbeat(t.Context(), n.ID, nodelink.Ack{Revision: last}); err != nil {
		t.Fatal(err)
	}
	e.do(t, req{method: "GET", path: base, token: s.AccessToken}).expect(t, 200).decode(t, &got)
	if !got.InSync {
		t.Fatalf("instance sync state %+v after the node acked", got)
	}
}

// TestUsageReportForeignInstance: a node reporting usage for an instance
// placed on another node gets 403 and nothing is billed; the serving
// node's own report is billed.
func TestUsageReportForeignInstance(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "bill@example.com", "Bill")
	org := "/v1/orgs/" + s.Org.ID
	e.do(t, req{method: "PUT", path: org + "/subscription", token: s.AccessToken, body: map[string]any{"plan": "pro"}}).expect(t, 200)
	inst := e.createInstance(t, s.AccessToken, s.Org.ID, "site")
	var b struct{ ID, Token string }
	e.do(t, req{method: "POST", path: "/v1/admin/nodes", token: operatorToken, body: map[string]any{"name": "node-b"}}).expect(t, 201).decode(t, &b)
	_, tokA, err := e.svc.EnsureNode(t.Context(), "test-node", nil) // the harness node's token (rotated)
	if err != nil {
		t.Fatal(err)
	}
	upcoming := func() int64 {
		var d billing.Draft
		e.do(t, req{method: "GET", path: org + "/invoices/upcoming", token: s.AccessToken}).expect(t, 200).decode(t, &d)
		return d.TotalCents
	}
	post := func(node, tok string, seq int64) (int, string) {
		now := time.Now().UTC()
		rep := nodelink.UsageReport{NodeID: node, Seq: seq, From: now.Add(-10 * time.Second), To: now,
			Instances: []nodelink.InstanceUsage{{InstanceID: inst.ID, MessagesIn: 1_000_000_000, MessageUnitsIn: 1_000_000_000}}}
		body, _ := json.Marshal(rep)
		rq, _ := http.NewRequest("POST", e.srv.URL+"/internal/v1/nodes/"+node+"/usage", bytes.NewReader(body))
		rq.Header.Set("Authorization", "Bearer "+tok)
		rq.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var p struct{ Type, Detail string }
		_ = json.NewDecoder(res.Body).Decode(&p)
		if res.StatusCode == 403 && res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("403 as %s", res.Header.Get("Content-Type"))
		}
		return res.StatusCode, p.Detail
	}
	before := upcoming()
	if code, detail := post(b.ID, b.Token, 1); code != 403 {
		t.Fatalf("node B reporting node A's instance: %d %s, want 403", code, detail)
	}
	if after := upcoming(); after != before {
		t.Fatalf("upcoming invoice %d cents after the refused report, was %d", after, before)
	}
	// The same report from the node that serves the instance is billed.
	if code, detail := post(e.nodeID, tokA, 1); code != 200 {
		t.Fatalf("node A reporting its own instance: %d %s", code, detail)
	}
	if after := upcoming(); after <= before {
		t.Fatalf("upcoming invoice %d cents after node A's report, was %d: the check above proves nothing", after, before)
	}
}
