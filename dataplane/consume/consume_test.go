package consume

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/nodelink"
)

func setup(t testing.TB, dir string) (*store.Store, *Service) {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	state := configsync.NewState()
	err = state.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &config.Snapshot{Revision: 1, Instances: []config.Instance{{
		ID: "i1", Status: config.StatusRunning, Topics: []config.Topic{{ID: "tp1", Name: "t", Filter: "fleet/+/telemetry", MaxQoS: 2}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetTopics(context.Background(), "i1", []store.TopicQueue{{Filter: "i1/fleet/+/telemetry"}}); err != nil {
		t.Fatal(err)
	}
	return st, New(st, state)
}

// TestGroupResumesAfterRestart: a group resumes after its committed offset
// when the node restarts (what was handed out and not acknowledged comes
// again, nothing acknowledged does), a new group at latest skips what is
// stored, and a long poll returns as soon as a message is stored.
func TestGroupResumesAfterRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, svc := setup(t, dir)
	for i := range 10 {
		if _, err := st.Append(ctx, []store.Message{{Instance: "i1", Topic: fmt.Sprintf("i1/fleet/d%d/telemetry", i), QoS: 1, Payload: []byte(fmt.Sprint(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := svc.Poll(ctx, "i1", nodelink.PollRequest{TopicID: "tp1", Group: "g", Limit: 6})
	if err != nil || len(res.Messages) != 6 || res.Messages[0].Topic != "fleet/d0/telemetry" {
		t.Fatalf("poll: %+v %v", res, err)
	}
	var offs []uint64
	for _, m := range res.Messages[:4] {
		offs = append(offs, m.Offset)
	}
	offs = append(offs, res.Messages[5].Offset) // 5th not acked: commit stops before it
	a, err := svc.Ack(ctx, "i1", nodelink.AckRequest{TopicID: "tp1", Group: "g", Offsets: offs})
	if err != nil || a.Committed != res.Messages[3].Offset || a.Pending != 2 {
		t.Fatalf("ack: %+v %v", a, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, svc = setup(t, dir)
	defer st.Close()
	res, err = svc.Poll(ctx, "i1", nodelink.PollRequest{TopicID: "tp1", Group: "g", Limit: 100})
	if err != nil || len(res.Messages) != 6 || string(res.Messages[0].Payload) != "4" {
		t.Fatalf("after restart: %+v, %v", res.Messages, err)
	}
	if r, _ := svc.Poll(ctx, "i1", nodelink.PollRequest{TopicID: "tp1", Group: "late", Start: "latest"}); len(r.Messages) != 0 {
		t.Fatalf("latest group got %d stored messages", len(r.Messages))
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = st.Append(ctx, []store.Message{{Instance: "i1", Topic: "i1/fleet/x/telemetry", QoS: 1, Payload: []byte("new")}})
	}()
	t0 := time.Now()
	r, err := svc.Poll(ctx, "i1", nodelink.PollRequest{TopicID: "tp1", Group: "late", WaitMillis: 5000})
	if err != nil || len(r.Messages) != 1 || string(r.Messages[0].Payload) != "new" || time.Since(t0) > 3*time.Second {
		t.Fatalf("long poll: %+v %v after %v", r, err, time.Since(t0))
	}
	if _, err := svc.Poll(ctx, "i1", nodelink.PollRequest{TopicID: "nope", Group: "g"}); err == nil {
		t.Fatal("unknown topic answered")
	}
	if _, err := svc.Poll(ctx, "i1", nodelink.PollRequest{TopicID: "tp1", Group: "bad group"}); err == nil {
		t.Fatal("bad group name accepted")
	}
}
