package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
)

// TestTopicStorageInUsage: the drained usage carries each provisioned
// topic's stored bytes (by topic ID, only the instance's topics, from the
// store's running counts), equal to /metrics' aerie_topic_stored_bytes; an
// instance whose topic storage moved is reported even when otherwise quiet,
// and is not reported again while nothing moves.
func TestTopicStorageInUsage(t *testing.T) {
	b := newStoreBundle(t)
	m := b.gw.Metrics()
	b.apply(t, config.Event{Kind: config.KindTopicPut, InstanceID: "i-aaaa", Topic: &config.Topic{ID: "t-tel", Name: "telemetry", Filter: "tel/#", MaxQoS: 2, RetainAllowed: true}})
	b.apply(t, config.Event{Kind: config.KindTopicPut, InstanceID: "i-aaaa", Topic: &config.Topic{ID: "t-cmd", Name: "commands", Filter: "cmd/#", MaxQoS: 2, RetainAllowed: true}})
	if !waitFor(t, 5*time.Second, func() bool { ts, _ := b.gw.topics.TopicStats(context.Background(), "i-aaaa"); return len(ts) == 2 }) {
		t.Fatal("the store did not register the topic queues")
	}
	us := m.DrainUsage()
	u, ok := usageOf(us, "i-aaaa")
	if !ok || len(u.TopicStoredBytes) != 2 || u.TopicStoredBytes["t-tel"] != 0 || u.TopicStoredBytes["t-cmd"] != 0 {
		t.Fatalf("first drain: %+v", us)
	}
	if x, ok := usageOf(us, "i-bbbb"); ok {
		t.Fatalf("an instance without topics was reported: %+v", x)
	}

	c, err := b.v3(t, "tele", "dev@i-aaaa", "pw-dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 20, 1000
	for i := range n {
		if tok := c.Publish(fmt.Sprintf("tel/%d", i), 1, false, strings.Repeat("x", size)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	c.Disconnect(100)
	if !waitFor(t, 3*time.Second, func() bool { u, _ := usageOf(m.DrainUsage(), "i-aaaa"); return u.Connections == 0 }) {
		t.Fatal("connection gauge did not fall after disconnect")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	tel := b.gw.topicStored("i-aaaa")
	var bytes int64
	for _, tb := range tel {
		if tb.ID == "t-tel" {
			bytes = tb.Bytes
		}
	}
	if bytes < n*size {
		t.Fatalf("topic telemetry stores %d bytes for %d messages of %d", bytes, n, size)
	}
	for _, want := range []string{
		fmt.Sprintf(`aerie_topic_stored_bytes{aerie_instance="i-aaaa",topic="telemetry"} %d`, bytes),
		`aerie_topic_stored_bytes{aerie_instance="i-aaaa",topic="commands"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Quiet now: not reported while its storage does not move.
	if x, ok := usageOf(m.DrainUsage(), "i-aaaa"); ok {
		t.Fatalf("a quiet instance with unchanged storage was reported: %+v", x)
	}
	// Storage moved (a topic removed): reported though quiet.
	b.apply(t, config.Event{Kind: config.KindTopicDelete, InstanceID: "i-aaaa", ID: "t-cmd"})
	u, ok = usageOf(m.DrainUsage(), "i-aaaa")
	if !ok || len(u.TopicStoredBytes) != 1 || u.TopicStoredBytes["t-tel"] != bytes || u.MessagesIn != 0 {
		t.Fatalf("after a topic went: %+v (reported %v)", u, ok)
	}
}
