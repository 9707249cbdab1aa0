package consume

import (
	"context"
	"fmt"
	"testing"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/nodelink"
)

// TestGroupsLag: each group of a topic is listed with its committed offset,
// lag (stored messages after it), pending (handed out, not acknowledged)
// and the age of its oldest unread message; a message on another topic
// counts for no group, and a caught-up group has no lag.
func TestGroupsLag(t *testing.T) {
	ctx := context.Background()
	st, svc := setup(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	publish := func(topic string, n int) {
		t.Helper()
		for i := range n {
			if _, err := st.Append(ctx, []store.Message{{Instance: "i1", Topic: "i1/" + topic, QoS: 1, Payload: []byte(fmt.Sprint(i))}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish("fleet/d1/telemetry", 10)
	publish("other/topic", 3)
	// "app" reads 6 and acks 4; "audit" reads all 10 and acks them all.
	res, err := svc.Poll(ctx, "i1", nodelink.PollRequest{TopicID: "tp1", Group: "app", Limit: 6})
	if err != nil || len(res.Messages) != 6 {
		t.Fatalf("poll: %+v %v", res, err)
	}
	var offs []uint64
	for _, m := range res.Messages[:4] {
		offs = append(offs, m.Offset)
	}
	if _, err := svc.Ack(ctx, "i1", nodelink.AckRequest{TopicID: "tp1", Group: "app", Offsets: offs}); err != nil {
		t.Fatal(err)
	}
	all, err := svc.Poll(ctx, "i1", nodelink.PollRequest{TopicID: "tp1", Group: "audit", Limit: 100, AckOffsets: nil})
	if err != nil || len(all.Messages) != 10 {
		t.Fatalf("poll audit: %d %v", len(all.Messages), err)
	}
	offs = offs[:0]
	for _, m := range all.Messages {
		offs = append(offs, m.Offset)
	}
	if _, err := svc.Ack(ctx, "i1", nodelink.AckRequest{TopicID: "tp1", Group: "audit", Offsets: offs}); err != nil {
		t.Fatal(err)
	}
	gs, err := svc.Groups(ctx, "i1", nodelink.GroupsRequest{TopicID: "tp1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 || gs[0].Group != "app" || gs[1].Group != "audit" {
		t.Fatalf("groups %+v", gs)
	}
	app, audit := gs[0], gs[1]
	if app.Lag != 6 || app.Pending != 2 || app.LagCapped || app.OldestUnread == nil || app.Committed != res.Messages[3].Offset {
		t.Errorf("app: %+v, want lag 6 (2 pending + 4 never read), committed %d", app, res.Messages[3].Offset)
	}
	if audit.Lag != 0 || audit.Pending != 0 || audit.OldestUnread != nil {
		t.Errorf("audit (caught up): %+v", audit)
	}
	// More messages: both lags grow by them.
	publish("fleet/d2/telemetry", 5)
	gs, err = svc.Groups(ctx, "i1", nodelink.GroupsRequest{TopicID: "tp1"})
	if err != nil || gs[0].Lag != 11 || gs[1].Lag != 5 {
		t.Errorf("after 5 more: %+v %v", gs, err)
	}
	if _, err := svc.Groups(ctx, "i1", nodelink.GroupsRequest{TopicID: "nope"}); err == nil {
		t.Error("an unknown topic answered")
	}
	// A new service (as after a node restart) lists them from the store:
	// their cursors are durable, nothing is pending.
	fresh := New(st, svc.state)
	gs, err = fresh.Groups(ctx, "i1", nodelink.GroupsRequest{TopicID: "tp1"})
	if err != nil || len(gs) != 2 || gs[0].Lag != 11 || gs[0].Pending != 0 {
		t.Errorf("from the store alone: %+v %v", gs, err)
	}
}
