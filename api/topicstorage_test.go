package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/aeriemq/aerie/nodelink"
)

// TestUsageReportTopicStorage: a node's usage report carries stored bytes
// per topic; the control plane records the instance's own topics only (not
// another instance's, not an unknown one, and the report is still
// counted), and shows them in the instance metrics API and the usage API;
// another org gets 404 for the metrics and none of it in its usage.
func TestUsageReportTopicStorage(t *testing.T) {
	e := newEnv(t)
	s := e.signup(t, "topics@example.com", "T")
	org := "/v1/orgs/" + s.Org.ID
	inst := e.createInstance(t, s.AccessToken, s.Org.ID, "site")
	sibling := e.createInstance(t, s.AccessToken, s.Org.ID, "sibling")
	topic := func(instID, name string) string {
		var tp struct{ ID string }
		e.do(t, req{method: "POST", path: org + "/instances/" + instID + "/topics", token: s.AccessToken,
			body: map[string]any{"name": name, "filter": name + "/#"}}).expect(t, http.StatusCreated).decode(t, &tp)
		return tp.ID
	}
	tel, idle, theirs := topic(inst.ID, "telemetry"), topic(inst.ID, "idle"), topic(sibling.ID, "other")
	_, tok, err := e.svc.EnsureNode(t.Context(), "test-node", nil) // the harness node's token (rotated)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	rep := nodelink.UsageReport{NodeID: e.nodeID, Seq: 1, From: now.Add(-10 * time.Second), To: now,
		Instances: []nodelink.InstanceUsage{{InstanceID: inst.ID, MessagesIn: 3,
			TopicStoredBytes: map[string]int64{tel: 12345, idle: 0, theirs: 999, "t-unknown": 7}}}}
	body, _ := json.Marshal(rep)
	rq, _ := http.NewRequest("POST", e.srv.URL+"/internal/v1/nodes/"+e.nodeID+"/usage", bytes.NewReader(body))
	rq.Header.Set("Authorization", "Bearer "+tok)
	rq.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("usage report: %d", res.StatusCode)
	}

	type storage struct {
		InstanceID  string    `json:"instance_id"`
		TopicID     string    `json:"topic_id"`
		StoredBytes int64     `json:"stored_bytes"`
		ReportedAt  time.Time `json:"reported_at"`
	}
	var m struct {
		Points []struct {
			MessagesIn int64 `json:"messages_in"`
		}
		Topics []storage
	}
	e.do(t, req{method: "GET", path: org + "/instances/" + inst.ID + "/metrics?step=10s", token: s.AccessToken}).expect(t, 200).decode(t, &m)
	var in int64
	for _, p := range m.Points {
		in += p.MessagesIn
	}
	want := []storage{{inst.ID, idle, 0, now}, {inst.ID, tel, 12345, now}}
	if tel < idle {
		want[0], want[1] = want[1], want[0]
	}
	if in != 3 || len(m.Topics) != 2 || m.Topics[0].TopicID != want[0].TopicID || m.Topics[1].TopicID != want[1].TopicID ||
		m.Topics[0].StoredBytes != want[0].StoredBytes || m.Topics[1].StoredBytes != want[1].StoredBytes ||
		!m.Topics[0].ReportedAt.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("metrics: messages in %d, topics %+v; want 3 and %+v", in, m.Topics, want)
	}
	var sib struct{ Topics []storage }
	e.do(t, req{method: "GET", path: org + "/instances/" + sibling.ID + "/metrics", token: s.AccessToken}).expect(t, 200).decode(t, &sib)
	if len(sib.Topics) != 0 {
		t.Fatalf("another instance's topic recorded from this instance's report: %+v", sib.Topics)
	}
	var u struct {
		TopicStorage []storage `json:"topic_storage"`
	}
	e.do(t, req{method: "GET", path: org + "/usage", token: s.AccessToken}).expect(t, 200).decode(t, &u)
	if len(u.TopicStorage) != 2 {
		t.Fatalf("usage topic_storage %+v", u.TopicStorage)
	}

	stranger := e.signup(t, "stranger@example.com", "S")
	e.do(t, req{method: "GET", path: "/v1/orgs/" + stranger.Org.ID + "/instances/" + inst.ID + "/metrics", token: stranger.AccessToken}).problem(t, 404, "not-found")
	var su struct {
		TopicStorage []storage `json:"topic_storage"`
	}
	e.do(t, req{method: "GET", path: "/v1/orgs/" + stranger.Org.ID + "/usage", token: stranger.AccessToken}).expect(t, 200).decode(t, &su)
	if len(su.TopicStorage) != 0 {
		t.Fatalf("another org sees %+v", su.TopicStorage)
	}
}
