package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
)

func topicLog(t *testing.T, b store.Backend) store.TopicLog {
	t.Helper()
	tl, ok := b.(store.TopicLog)
	if !ok {
		t.Fatalf("%T does not implement store.TopicLog", b)
	}
	return tl
}

// testTopicGroups: topic queues (exact and wildcard) with their stored
// bytes, group cursors, lag and the last offset.
func testTopicGroups(t *testing.T, b store.Backend) {
	ctx := context.Background()
	tl := topicLog(t, b)
	if off, err := tl.LastOffset(ctx, inst); err != nil || off != 0 {
		t.Fatalf("LastOffset of an empty instance = %d, %v", off, err)
	}
	if err := tl.SetTopics(ctx, inst, []store.TopicQueue{{Filter: "t/+"}, {Filter: "t/a"}, {Filter: "empty/#"}}); err != nil {
		t.Fatalf("SetTopics: %v", err)
	}
	if !slices.Contains(tl.TopicInstances(), inst) {
		t.Fatalf("TopicInstances = %v", tl.TopicInstances())
	}
	offs := appendAll(t, b, msg("t/a", "1"), msg("t/b", "2"), msg("x/y", "3"), msg("t/a", "4"))
	if off, err := tl.LastOffset(ctx, inst); err != nil || off != offs[3] {
		t.Fatalf("LastOffset = %d, %v, want %d", off, err, offs[3])
	}
	eventually(t, b, "topic bytes", func() error {
		st, err := tl.TopicStats(ctx, inst)
		if err != nil {
			return err
		}
		if len(st) != 3 || st[0].Filter != "empty/#" || st[1].Filter != "t/+" || st[2].Filter != "t/a" {
			return fmt.Errorf("TopicStats = %+v", st)
		}
		if st[0].Bytes != 0 || st[2].Bytes <= 0 || st[1].Bytes <= st[2].Bytes {
			return fmt.Errorf("TopicStats bytes = %+v: want empty 0 < t/a < t/+", st)
		}
		return nil
	})
	if _, ok, err := tl.GroupCursor(ctx, inst, "t/+", "app"); err != nil || ok {
		t.Fatalf("GroupCursor of a new group: ok=%v, %v", ok, err)
	}
	if err := tl.CommitGroup(ctx, inst, "t/+", "app", offs[0]); err != nil {
		t.Fatalf("CommitGroup: %v", err)
	}
	if off, ok, err := tl.GroupCursor(ctx, inst, "t/+", "app"); err != nil || !ok || off != offs[0] {
		t.Fatalf("GroupCursor = %d,%v,%v, want %d", off, ok, err, offs[0])
	}
	if gs, err := tl.Groups(ctx, inst, "t/+"); err != nil || len(gs) != 1 || gs[0] != (store.GroupCursorInfo{Group: "app", Committed: offs[0]}) {
		t.Fatalf("Groups = %+v, %v", gs, err)
	}
	n, capped, oldest, err := tl.QueueLag(ctx, inst, "t/+", offs[0], 10)
	if err != nil || n != 2 || capped || oldest.IsZero() {
		t.Fatalf("QueueLag after the first = %d,%v,%v,%v, want 2 uncapped with a time", n, capped, oldest, err)
	}
	if n, capped, _, err := tl.QueueLag(ctx, inst, "t/+", 0, 2); err != nil || n != 2 || !capped {
		t.Fatalf("QueueLag capped = %d,%v,%v, want 2 capped", n, capped, err)
	}
	if n, _, _, err := tl.QueueLag(ctx, inst, "t/+", offs[3], 10); err != nil || n != 0 {
		t.Fatalf("QueueLag at the end = %d, %v", n, err)
	}
	if err := tl.DeleteGroup(ctx, inst, "t/+", "app"); err != nil {
		t.Fatalf("DeleteGroup: %v", err)
	}
	if _, ok, err := tl.GroupCursor(ctx, inst, "t/+", "app"); err != nil || ok {
		t.Fatalf("GroupCursor after DeleteGroup: ok=%v, %v", ok, err)
	}
	if err := tl.SetTopics(ctx, inst, nil); err != nil {
		t.Fatalf("SetTopics(nil): %v", err)
	}
	if slices.Contains(tl.TopicInstances(), inst) {
		t.Fatalf("TopicInstances after removing every topic = %v", tl.TopicInstances())
	}
}

// testTopicChanged: Changed is closed by the next append.
func testTopicChanged(t *testing.T, b store.Backend) {
	ch := topicLog(t, b).Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before any append")
	default:
	}
	appendAll(t, b, msg("c/d", "x"))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed not closed by an append")
	}
}

// testTopicMaxAge: a topic's MaxAge hides its older messages from its
// queue's readers (lag included).
func testTopicMaxAge(t *testing.T, b store.Backend) {
	ctx := context.Background()
	tl := topicLog(t, b)
	if err := tl.SetTopics(ctx, inst, []store.TopicQueue{{Filter: "old/+", MaxAge: time.Second}}); err != nil {
		t.Fatalf("SetTopics: %v", err)
	}
	appendAll(t, b, msg("old/a", "1"), msg("old/b", "2"))
	if got := payloads(pullAll(t, b, "old/+", 0)); len(got) != 2 {
		t.Fatalf("fresh topic queue = %v", got)
	}
	time.Sleep(1200 * time.Millisecond)
	fresh := appendAll(t, b, msg("old/c", "3"))
	eventually(t, b, "topic max age", func() error {
		if got := payloads(pullAll(t, b, "old/+", 0)); !slices.Equal(got, []string{"3"}) {
			return fmt.Errorf("queue past its topic's MaxAge = %v", got)
		}
		if n, _, _, err := tl.QueueLag(ctx, inst, "old/+", 0, 10); err != nil || n != 1 {
			return fmt.Errorf("QueueLag = %d, %v, want 1", n, err)
		}
		return nil
	})
	if ents := pullAll(t, b, "old/+", 0); ents[0].Offset != fresh[0] {
		t.Fatalf("offset %d, want %d", ents[0].Offset, fresh[0])
	}
}

// testDeadLetters: a rule's dead-letter list by offset, replace, count,
// delete one, purge.
func testDeadLetters(t *testing.T, b store.Backend) {
	ctx := context.Background()
	dl, ok := b.(store.DeadLetterStore)
	if !ok {
		t.Fatalf("%T does not implement store.DeadLetterStore", b)
	}
	dead := func(off uint64, attempts int) store.DeadLetter {
		m := msg("d/x", "p")
		m.Time = time.UnixMilli(1_700_000_000_000).UTC()
		return store.DeadLetter{Offset: off, Message: &m, Reason: "refused", Attempts: attempts, DeadAt: time.UnixMilli(1_700_000_001_000).UTC()}
	}
	if err := dl.PutDeadLetters(ctx, inst, "r1", []store.DeadLetter{dead(5, 1), dead(2, 1), dead(9, 3)}); err != nil {
		t.Fatalf("PutDeadLetters: %v", err)
	}
	if err := dl.PutDeadLetters(ctx, inst, "r2", []store.DeadLetter{dead(1, 1)}); err != nil {
		t.Fatalf("PutDeadLetters r2: %v", err)
	}
	list := func(after uint64, limit int) []uint64 {
		t.Helper()
		ds, err := dl.DeadLetters(ctx, inst, "r1", after, limit)
		if err != nil {
			t.Fatalf("DeadLetters: %v", err)
		}
		out := make([]uint64, len(ds))
		for i, d := range ds {
			out[i] = d.Offset
		}
		return out
	}
	if got := list(0, 10); !slices.Equal(got, []uint64{2, 5, 9}) {
		t.Fatalf("list = %v", got)
	}
	if got := list(0, 2); !slices.Equal(got, []uint64{2, 5}) {
		t.Fatalf("first page = %v", got)
	}
	if got := list(2, 10); !slices.Equal(got, []uint64{5, 9}) {
		t.Fatalf("after 2 = %v", got)
	}
	if err := dl.PutDeadLetters(ctx, inst, "r1", []store.DeadLetter{dead(5, 4)}); err != nil {
		t.Fatalf("PutDeadLetters again: %v", err)
	}
	ds, err := dl.DeadLetters(ctx, inst, "r1", 2, 1)
	if err != nil || len(ds) != 1 || ds[0].Attempts != 4 || ds[0].Reason != "refused" || string(ds[0].Message.Payload) != "p" ||
		!ds[0].DeadAt.Equal(time.UnixMilli(1_700_000_001_000)) {
		t.Fatalf("replaced entry = %+v, %v", ds, err)
	}
	count := func(rule string) int {
		t.Helper()
		n, err := dl.CountDeadLetters(ctx, inst, rule)
		if err != nil {
			t.Fatalf("CountDeadLetters: %v", err)
		}
		return n
	}
	if n := count("r1"); n != 3 {
		t.Fatalf("count = %d, want 3", n)
	}
	if err := dl.DeleteDeadLetters(ctx, inst, "r1", []uint64{5}); err != nil {
		t.Fatalf("DeleteDeadLetters: %v", err)
	}
	if got := list(0, 10); !slices.Equal(got, []uint64{2, 9}) {
		t.Fatalf("after deleting 5: %v", got)
	}
	if err := dl.DeleteDeadLetters(ctx, inst, "r1", nil); err != nil {
		t.Fatalf("DeleteDeadLetters(nil): %v", err)
	}
	if n, n2 := count("r1"), count("r2"); n != 0 || n2 != 1 {
		t.Fatalf("after purge: r1 %d, r2 %d; want 0, 1", n, n2)
	}
}
