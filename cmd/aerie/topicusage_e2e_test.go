package main_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/internal/pgtest"
)

type topicStorageOut struct {
	InstanceID  string     `json:"instance_id"`
	TopicID     string     `json:"topic_id"`
	StoredBytes int64      `json:"stored_bytes"`
	ReportedAt  *time.Time `json:"reported_at"`
}

func storageByTopic(ts []topicStorageOut) map[string]topicStorageOut {
	out := map[string]topicStorageOut{}
	for _, s := range ts {
		out[s.TopicID] = s
	}
	return out
}

// TestTopicStorageInUsageAndMetrics (issue 17 item 1, "storage per topic
// is reported in usage and metrics") against `aerie serve` reporting usage
// every second: a device publishes N QoS 1 messages of known size to a
// provisioned topic; within a few reports the instance metrics API and the
// usage API show that topic's stored bytes equal to the node's
// …/topics/{id}/storage answer (≥ N × size), the other topic 0 (reported);
// the node's /metrics has aerie_topic_stored_bytes with the instance and
// topic name labels; another org gets 404 for the instance's metrics and
// sees none of its topics in its own usage.
func TestTopicStorageInUsageAndMetrics(t *testing.T) {
	pp := freePorts(t)
	mp := freePorts(t).http // the operators' /metrics listener
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t), "AERIE_USAGE_INTERVAL=1s", "AERIE_METRICS_ADDR="+mp),
		append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	c, org := signup(t, base, "topicusage@example.com")
	other, otherOrg := signup(t, base, "topicusage-other@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "fleet"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	ip := "/v1/orgs/" + org + "/instances/" + inst.ID
	var tel, idle topicOut
	c.callPrefer(t, 5, "POST", ip+"/topics", map[string]any{"name": "telemetry", "filter": "fleet/+/telemetry"}, &tel)
	c.callPrefer(t, 5, "POST", ip+"/topics", map[string]any{"name": "idle", "filter": "idle/#"}, &idle)
	var cred credOut
	c.callPrefer(t, 5, "POST", ip+"/credentials", map[string]any{"username": "dev"}, &cred)
	time.Sleep(300 * time.Millisecond) // the node registers the topic queues

	dev, err := connect3(pp.mqtt, "dev", cred.MQTTUsername, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 15, 2000
	for i := range n {
		if tk := dev.Publish(fmt.Sprintf("fleet/d%d/telemetry", i%3), 1, false, strings.Repeat("x", size)); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("publish: %v", tk.Error())
		}
		time.Sleep(60 * time.Millisecond) // within the Free plan's 20 publishes/s per client
	}
	dev.Disconnect(100)
	var node storageOut
	c.call(t, "GET", ip+"/topics/"+tel.ID+"/storage", nil, 200, &node)
	if node.StoredBytes < n*size {
		t.Fatalf("the node stores %d bytes for %d messages of %d", node.StoredBytes, n, size)
	}

	type metricsOut struct {
		Topics []topicStorageOut `json:"topics"`
	}
	var m metricsOut
	deadline := time.Now().Add(20 * time.Second) // a few 1 s reports
	for {
		c.call(t, "GET", ip+"/metrics", nil, 200, &m)
		if storageByTopic(m.Topics)[tel.ID].StoredBytes == node.StoredBytes || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	got := storageByTopic(m.Topics)
	if len(got) != 2 || got[tel.ID].StoredBytes != node.StoredBytes || got[tel.ID].InstanceID != inst.ID ||
		got[tel.ID].ReportedAt == nil || time.Since(*got[tel.ID].ReportedAt) > time.Minute {
		t.Fatalf("metrics API topics %+v; the node stores %d for %s", m.Topics, node.StoredBytes, tel.ID)
	}
	if got[idle.ID].StoredBytes != 0 || got[idle.ID].ReportedAt == nil {
		t.Fatalf("idle topic in the metrics API: %+v", got[idle.ID])
	}

	var usage struct {
		TopicStorage []topicStorageOut `json:"topic_storage"`
	}
	c.call(t, "GET", "/v1/orgs/"+org+"/usage", nil, 200, &usage)
	if u := storageByTopic(usage.TopicStorage); len(u) != 2 || u[tel.ID].StoredBytes != node.StoredBytes || u[idle.ID].StoredBytes != 0 {
		t.Fatalf("usage API topic_storage %+v; the node stores %d", usage.TopicStorage, node.StoredBytes)
	}

	resp, err := http.Get("http://" + mp + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`aerie_topic_stored_bytes{aerie_instance="%s",topic="telemetry"} %d`, inst.ID, node.StoredBytes),
		fmt.Sprintf(`aerie_topic_stored_bytes{aerie_instance="%s",topic="idle"} 0`, inst.ID),
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	other.call(t, "GET", "/v1/orgs/"+otherOrg+"/instances/"+inst.ID+"/metrics", nil, 404, nil)
	var theirs struct {
		TopicStorage []topicStorageOut `json:"topic_storage"`
	}
	other.call(t, "GET", "/v1/orgs/"+otherOrg+"/usage", nil, 200, &theirs)
	if len(theirs.TopicStorage) != 0 {
		t.Fatalf("another org sees topic storage %+v", theirs.TopicStorage)
	}
}
