package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestTopicRetention: a provisioned topic's queue keeps its messages for
// its own MaxAge (shorter than the instance's), readers skip what is older,
// its index entries go, and the log frees the records once they are dead
// for every topic they match; a record also in a long-lived topic stays.
// Per-topic bytes, floors and group cursors survive a restart.
func TestTopicRetention(t *testing.T) {
	f := newFixture(t, Options{DefaultLimits: Limits{MaxAge: 24 * time.Hour}})
	if err := f.s.SetTopics(f.ctx, "i", []TopicQueue{{Filter: "fleet/+/telemetry", MaxAge: 2 * time.Second}, {Filter: "keep/#"}}); err != nil {
		t.Fatal(err)
	}
	for k := range 50 {
		f.publish("i", fmt.Sprintf("fleet/d%d/telemetry", k%5), fmt.Sprint("old", k))
	}
	f.publish("i", "keep/x", "kept")
	per := f.s.Stats("i").LogBytes / 51
	st := mustTopicStats(t, f.s, "i")
	if len(st) != 2 || st[0].Filter != "fleet/+/telemetry" || st[0].Bytes < 49*per || st[0].Bytes > 51*per {
		t.Fatalf("topic stats %+v (per message %d)", st, per)
	}
	if err := f.s.CommitGroup(f.ctx, "i", "fleet/+/telemetry", "app", 7); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(3 * time.Second)
	f.publish("i", "fleet/d1/telemetry", "new")
	before := f.s.Stats("i").LogBytes
	if err := f.s.EnforceRetention(f.ctx, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if got := f.payloads("i", "fleet/+/telemetry"); !equal(got, []string{"new"}) {
		t.Fatalf("topic queue keeps %v", got)
	}
	if n := f.lqKeys("i", "fleet/+/telemetry"); n != 1 {
		t.Fatalf("%d index entries left in the topic queue, want 1", n)
	}
	after := f.s.Stats("i").LogBytes
	if after > before-45*per {
		t.Fatalf("log bytes %d → %d: the store did not free the expired messages", before, after)
	}
	if got := f.payloads("i", "keep/#"); !equal(got, []string{"kept"}) {
		t.Fatalf("long-lived topic keeps %v", got)
	}
	st = mustTopicStats(t, f.s, "i")
	if st[0].Bytes > 2*per || st[0].Floor == 0 {
		t.Fatalf("topic stats after retention %+v", st)
	}
	f.reopen()
	if got := f.payloads("i", "fleet/+/telemetry"); !equal(got, []string{"new"}) {
		t.Fatalf("after restart the topic queue keeps %v", got)
	}
	f.publish("i", "fleet/d2/telemetry", "later")
	if got := f.payloads("i", "fleet/+/telemetry"); !equal(got, []string{"new", "later"}) {
		t.Fatalf("after restart the wildcard topic queue is not indexed: %v", got)
	}
	if st2 := mustTopicStats(t, f.s, "i"); st2[0].Floor != st[0].Floor || st2[0].Bytes < st[0].Bytes {
		t.Fatalf("topic stats after restart %+v, before %+v", st2, st)
	}
	if off, ok, err := f.s.GroupCursor(f.ctx, "i", "fleet/+/telemetry", "app"); err != nil || !ok || off != 7 {
		t.Fatalf("group cursor after restart = %d %v %v", off, ok, err)
	}
	if err := f.s.SetTopics(f.ctx, "i", nil); err != nil {
		t.Fatal(err)
	}
	if n := f.lqKeys("i", "fleet/+/telemetry"); n != 0 {
		t.Fatalf("removed wildcard topic left %d index entries", n)
	}
}

func mustTopicStats(t *testing.T, s *Store, inst string) []TopicStats {
	t.Helper()
	st, err := s.TopicStats(context.Background(), inst)
	if err != nil {
		t.Fatalf("TopicStats: %v", err)
	}
	return st
}
