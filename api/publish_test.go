package api_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/aeriemq/aerie/tenancy"
)

// TestHTTPPublishAPI covers the control-plane side of HTTP publish: what
// reaches the instance's node, idempotent retries, scopes, and a node that
// does not take the message. The MQTT side (delivery, quotas, usage) is
// TestHTTPPublish in cmd/aerie.
func TestHTTPPublishAPI(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "pub@example.com", "Pub")
	inst := e.createInstance(t, s.AccessToken, s.Org.ID, "plant")
	write := e.createKey(t, s.AccessToken, s.Org.ID, "backend", "write")
	read := e.createKey(t, s.AccessToken, s.Org.ID, "viewer", "read")
	path := "/v1/orgs/" + s.Org.ID + "/instances/" + inst.ID + "/publish"

	t.Run("the instance's node is asked to publish exactly what was sent", func(t *testing.T) {
		before := len(e.published.all())
		var out struct {
			ID, Topic  string
			InstanceID string `json:"instance_id"`
			QoS, Bytes int
			Retain     bool
		}
		e.do(t, req{method: "POST", path: path, token: write.Secret,
			body: map[string]any{"topic": "valve/3/set", "payload": "AAEC/w==", "payload_encoding": "base64", "qos": 2, "retain": true}}).
			expect(t, http.StatusOK).decode(t, &out)
		got := e.published.all()[before:]
		if len(got) != 1 {
			t.Fatalf("node asked %d times", len(got))
		}
		p := got[0]
		if p.ID != out.ID || p.InstanceID != inst.ID || p.Topic != "valve/3/set" || !bytes.Equal(p.Payload, []byte{0, 1, 2, 0xff}) || p.QoS != 2 || !p.Retain {
			t.Fatalf("node got %+v for answer %+v", p, out)
		}
		if out.Bytes != 4 || out.QoS != 2 || !out.Retain {
			t.Fatalf("answer %+v", out)
		}
	})

	t.Run("a retry with the same Idempotency-Key replays the answer and publishes once", func(t *testing.T) {
		before := len(e.published.all())
		q := req{method: "POST", path: path, token: write.Secret, header: map[string]string{"Idempotency-Key": "pub-retry-1"},
			body: map[string]any{"topic": "valve/3/set", "payload": "open"}}
		first := e.do(t, q).expect(t, http.StatusOK)
		second := e.do(t, q).expect(t, http.StatusOK)
		if !bytes.Equal(first.body, second.body) {
			t.Fatalf("replay differs: %s vs %s", first.body, second.body)
		}
		if n := len(e.published.all()) - before; n != 1 {
			t.Fatalf("published %d times", n)
		}
	})

	t.Run("a read-scope key may not publish", func(t *testing.T) {
		before := len(e.published.all())
		e.do(t, req{method: "POST", path: path, token: read.Secret, body: map[string]any{"topic": "a", "payload": "x"}}).
			problem(t, http.StatusForbidden, "insufficient-scope")
		if len(e.published.all()) != before {
			t.Fatal("published anyway")
		}
	})

	t.Run("a payload over 256 KiB is refused before it reaches a node", func(t *testing.T) {
		big := make([]byte, tenancy.MaxHTTPPayload+1)
		e.do(t, req{method: "POST", path: path, token: write.Secret, body: map[string]any{"topic": "a", "payload": string(bytes.Repeat([]byte("x"), len(big)))}}).
			problem(t, http.StatusRequestEntityTooLarge, "payload-too-large")
	})

	t.Run("no node takes the message: 503 with Retry-After, and it is never published later", func(t *testing.T) {
		ctx := context.Background()
		stranded := e.createInstance(t, s.AccessToken, s.Org.ID, "stranded")
		dead, _, err := e.svc.EnsureNode(ctx, "dead-node", map[string]string{"mqtt": "mqtt://dead:1883"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.db.Pool.Exec(ctx, `UPDATE instances SET node_id = $1, cell_id = $3 WHERE id = $2`, dead.ID, stranded.ID, dead.CellID); err != nil {
			t.Fatal(err)
		}
		before := len(e.published.all())
		r := e.do(t, req{method: "POST", path: "/v1/orgs/" + s.Org.ID + "/instances/" + stranded.ID + "/publish", token: write.Secret,
			body: map[string]any{"topic": "a", "payload": "lost?"}})
		r.problem(t, http.StatusServiceUnavailable, "node-unavailable")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		if len(e.published.all()) != before {
			t.Fatal("published on another node")
		}
	})
}
