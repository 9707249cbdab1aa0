package jsstore

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
)

// TestCellNodeLeaves: LiveNodes and PeerConnections follow the heartbeats;
// when a node stops (its server shut down, as by kill -9) the survivors
// count it out after NodeTimeout, one of them marks its sessions
// disconnected at the time it was last seen, and each will fires exactly
// once while the survivors call ExpireSessions at once.
func TestCellNodeLeaves(t *testing.T) {
	srvs, st := openCell(t)
	for i, s := range st {
		s.SetConnections(map[string]int{"i1": i + 1, "i2": 10})
	}
	waitFor(t, "3 live nodes, peers' connections", 5*time.Second, func() bool {
		return st[0].LiveNodes() == 3 && st[1].LiveNodes() == 3 && st[0].PeerConnections("i1") == 2+3 &&
			st[2].PeerConnections("i1") == 1+2 && st[0].PeerConnections("i2") == 20
	})
	ctx := context.Background()
	const n = 4
	for i := range n {
		c := fmt.Sprintf("c%d", i)
		persistent(t, st[2], c, "x/#", &store.Will{Message: store.Message{Topic: "will/" + c, Payload: []byte(c)}})
	}
	// A session of a survivor, connected: never reaped.
	persistent(t, st[0], "keep", "", &store.Will{Message: store.Message{Topic: "will/keep", Payload: []byte("k")}})
	waitFor(t, "n1 sees n3's sessions", 5*time.Second, func() bool { return len(st[0].SessionsOn("i1", "x/#")) == n })

	killed := time.Now()
	srvs[2].Shutdown()
	st[2].nc.Close() // the process is gone with its server
	survivors := st[:2]
	if w := expireAll(t, survivors, 1, time.Now); len(w) != 0 {
		t.Fatalf("wills fired within the liveness window: %v", w)
	}
	waitFor(t, "n3 counted out", 20*time.Second, func() bool {
		return st[0].LiveNodes() == 2 && st[1].LiveNodes() == 2 && st[0].PeerConnections("i1") == 2
	})
	got := map[string]int{}
	waitFor(t, "all wills of n3's sessions", 20*time.Second, func() bool {
		for _, w := range expireAll(t, survivors, 1, time.Now) {
			got[w.Topic]++
		}
		return len(got) == n
	})
	for _, w := range expireAll(t, survivors, 3, time.Now) {
		got[w.Topic]++
	}
	for topic, k := range got {
		if k != 1 || topic == "will/keep" {
			t.Fatalf("wills %v: want each of n3's sessions' once, none of n1's", got)
		}
	}
	sess, err := st[1].LoadSession(ctx, "i1", "c0")
	if err != nil {
		t.Fatal(err)
	}
	if d := sess.DisconnectedAt; d.IsZero() || d.After(killed.Add(time.Second)) || d.Before(killed.Add(-2*time.Second)) {
		t.Fatalf("reaped session disconnected at %v, n3 stopped at %v", d, killed)
	}
	persistent(t, st[0], "after", "y/#", nil)
	waitFor(t, "n2 sees a session made on n1 after n3 stopped", 10*time.Second, func() bool { return len(st[1].SessionsOn("i1", "y/#")) == 1 })
	if r := st[0].CellIO().Reaped + st[1].CellIO().Reaped; r != n {
		t.Fatalf("sessions reaped %d times, want %d", r, n)
	}
	if sess, err := st[0].LoadSession(ctx, "i1", "keep"); err != nil || !sess.DisconnectedAt.IsZero() || sess.Will == nil {
		t.Fatalf("a live node's session was touched: %+v, %v", sess, err)
	}
}

// testCellRetained: retained counts are exact on every node whichever node
// wrote, and the other nodes' sets and clears arrive as CellRetained.
func testCellRetained(t *testing.T, st []*Store) {
	ctx := context.Background()
	for _, s := range st {
		s.SetLimits("i1", store.Limits{MaxRetained: 3})
	}
	for i, s := range st {
		m := store.Message{Instance: "i1", Topic: fmt.Sprintf("r/%d", i), QoS: 1, Payload: []byte("v")}
		retry(t, "retain", func() error { return s.Retain(ctx, m) })
	}
	counts := func(want int) func() bool {
		return func() bool {
			for _, s := range st {
				if s.Stats("i1").RetainedMessages != want {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "3 retained on every node", 5*time.Second, counts(3))
	for _, s := range st {
		if !s.RetainedFull("i1", "r/new") || s.RetainedFull("i1", "r/0") {
			t.Fatalf("%s: RetainedFull wrong at the quota", s.NodeName())
		}
	}
	if err := st[0].Retain(ctx, store.Message{Instance: "i1", Topic: "r/1"}); err != nil { // n1 clears n2's
		t.Fatal(err)
	}
	waitFor(t, "2 retained on every node", 5*time.Second, counts(2))
	if msgs, err := st[2].Retained(ctx, "i1", "r/+"); err != nil || len(msgs) != 2 {
		t.Fatalf("n3 reads %d retained (%v), want 2", len(msgs), err)
	}
	// n2 saw n1's set of r/0, n3's set of r/2 and n1's clear of r/1; never its own.
	want := map[string]string{"r/0": "v", "r/2": "v", "r/1": ""}
	got := map[string]string{}
	for len(got) < len(want) {
		ev, ok := nextCell(t, st[1], 5*time.Second)
		if !ok {
			t.Fatalf("n2's CellRetained: %v, want %v", got, want)
		}
		if ev.Kind != store.CellRetained || ev.Message.Instance != "i1" {
			t.Fatalf("n2: unexpected %+v", ev)
		}
		if _, dup := got[ev.Message.Topic]; dup && ev.Message.Topic != "r/1" {
			t.Fatalf("n2: %s twice", ev.Message.Topic)
		}
		got[ev.Message.Topic] = string(ev.Message.Payload)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("n2's CellRetained %v, want %v", got, want)
	}
	if ev, ok := nextCell(t, st[1], 200*time.Millisecond); ok {
		t.Fatalf("n2: unexpected %+v (its own write echoed?)", ev)
	}
}

// testCellRelayQoS0: a relayed QoS 0 message reaches the other nodes as
// CellPublish, not its origin; a node whose consumer lags drops (and
// counts) what exceeds CellBuffer.
func testCellRelayQoS0(t *testing.T, st []*Store) {
	ctx := context.Background()
	m := store.Message{Instance: "i1", Topic: "q0/a", Payload: []byte("hello")}
	if err := st[0].RelayQoS0(ctx, m); err != nil {
		t.Fatal(err)
	}
	for _, s := range st[1:] {
		ev, ok := nextCell(t, s, 5*time.Second)
		if !ok || ev.Kind != store.CellPublish || ev.Message.Topic != "q0/a" || !bytes.Equal(ev.Message.Payload, m.Payload) {
			t.Fatalf("%s: %+v (%v), want the relayed message", s.NodeName(), ev, ok)
		}
	}
	if ev, ok := nextCell(t, st[0], 300*time.Millisecond); ok {
		t.Fatalf("origin got its own relay back: %+v", ev)
	}
	// n3 does not read while 20 more arrive: CellBuffer (4) wait, the rest drop.
	const burst = 20
	for range burst {
		if err := st[0].RelayQoS0(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "n3 took the burst", 5*time.Second, func() bool {
		io := st[2].CellIO()
		return io.RelayedIn == burst+1
	})
	dropped := st[2].CellIO().RelayDropped
	got := 0
	for {
		if _, ok := nextCell(t, st[2], 200*time.Millisecond); !ok {
			break
		}
		got++
	}
	if dropped < burst-5 || uint64(got)+dropped != burst {
		t.Fatalf("n3: %d delivered + %d dropped of %d (buffer 4)", got, dropped, burst)
	}
}
