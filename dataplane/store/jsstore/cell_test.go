package jsstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/nats-io/nats-server/v2/server"
)

const cellTimeout = 2 * time.Second // NodeTimeout of the test cells

// openCell starts a 3-server JetStream cluster and opens one R3 store per
// server as nodes n1..n3 of a cell.
func openCell(t *testing.T) ([]*server.Server, []*Store) {
	t.Helper()
	srvs := startCluster(t)
	return srvs, openCellOn(t, srvs, "aerie")
}

// openCellOn opens the nodes of a cell with its own prefix (streams,
// buckets and subjects) on running servers.
func openCellOn(t *testing.T, srvs []*server.Server, prefix string) []*Store {
	t.Helper()
	stores := make([]*Store, len(srvs))
	for i, ns := range srvs {
		nc, err := Connect(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			stores[i], err = Open(ctx, nc, Options{Prefix: prefix, Replicas: 3, Timeout: 3 * time.Second,
				Node: fmt.Sprintf("n%d", i+1), NodeTimeout: cellTimeout, CellBuffer: 4})
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Open n%d: %v", i+1, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	return stores
}

// TestCell runs the cell cases on one 3-server cluster, each case with
// its own prefix (its own streams, buckets and subjects).
func TestCell(t *testing.T) {
	srvs := startCluster(t)
	for _, c := range []struct {
		name string
		fn   func(*testing.T, []*Store)
	}{
		{"Wakeup", testCellWakeup},
		{"LostNotice", testCellLostNotice},
		{"Takeover", testCellTakeover},
		{"OwnDeleteIsNoTakeover", testCellOwnDelete},
		{"WillOnce", testCellWillOnce},
		{"Retained", testCellRetained},
		{"RelayQoS0", testCellRelayQoS0},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, openCellOn(t, srvs, "c"+strings.ToLower(c.name))) })
	}
}

// retry runs fn until it succeeds (a fresh cluster elects stream leaders).
func retry(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// persistent creates a session with a subscription on s and resumes it.
func persistent(t *testing.T, s *Store, client, filter string, will *store.Will) {
	t.Helper()
	ctx := context.Background()
	retry(t, "save session", func() error {
		return s.SaveSession(ctx, store.Session{Instance: "i1", ClientID: client, ProtocolVersion: 5, Expiry: time.Hour, Will: will})
	})
	if filter != "" {
		retry(t, "subscribe", func() error {
			_, err := s.Subscribe(ctx, "i1", client, store.Subscription{Filter: filter, QoS: 1})
			return err
		})
	}
	if _, err := s.Resume(ctx, "i1", client); err != nil {
		t.Fatalf("Resume %s: %v", client, err)
	}
}

// testCellWakeup: an append on node B raises the queue event of a session
// resumed on node A, and A, pulling only when woken, reads the message
// (the re-raise covers a replica that had not applied it yet).
func testCellWakeup(t *testing.T, st []*Store) {
	a, b := st[0], st[1]
	persistent(t, a, "sub", "w/+", nil)
	waitFor(t, "B sees A's subscription", 5*time.Second, func() bool { return len(b.SessionsOn("i1", "w/+")) == 1 })
	a.TakeEvents()
	var off uint64
	retry(t, "append on B", func() error {
		offs, err := b.Append(context.Background(), []store.Message{{Instance: "i1", Topic: "w/1", QoS: 1, Payload: []byte("x")}})
		if err == nil {
			off = offs[0]
		}
		return err
	})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case <-a.Events():
		case <-deadline:
			t.Fatalf("A never read offset %d appended on B (remote appends seen: %d)", off, a.CellIO().RemoteAppends)
		}
		woken := false
		for _, ev := range a.TakeEvents() {
			woken = woken || ev.Queue == "w/+" && ev.Last >= off
		}
		if !woken {
			continue
		}
		ents, err := a.PullSession(context.Background(), "i1", "sub", "w/+", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) == 1 && ents[0].Offset == off && string(ents[0].Message.Payload) == "x" {
			break
		}
		if len(ents) > 0 {
			t.Fatalf("pulled %+v, want offset %d", ents, off)
		}
	}
	if a.CellIO().RemoteAppends == 0 {
		t.Fatal("A raised the event without B's notification")
	}
}

// nextCell returns the next CellEvent of s.
func nextCell(t *testing.T, s *Store, d time.Duration) (store.CellEvent, bool) {
	t.Helper()
	select {
	case ev := <-s.CellEvents():
		return ev, true
	case <-time.After(d):
		return store.CellEvent{}, false
	}
}

// testCellTakeover: a session resumed on A and then on B moves to B: A
// gets a CellTakeover, and A's stale SaveSession, Disconnect and
// DeleteSession leave B's record alone.
// testCellOwnDeleteIsNoTakeover: a node deleting a session it serves (a
// client reconnecting with clean start on the same node) and claiming it
// again is no takeover: no CellTakeover event on that node (it would end
// the client's new connection), and the session stays this node's.
func testCellOwnDelete(t *testing.T, st []*Store) {
	a := st[0]
	ctx := context.Background()
	persistent(t, a, "dev", "t/#", nil)
	a.TakeEvents()
	for i := range 3 {
		if err := a.DeleteSession(ctx, "i1", "dev"); err != nil {
			t.Fatal(err)
		}
		persistent(t, a, "dev", "", &store.Will{Message: store.Message{Topic: "will/a", Payload: []byte("a")}})
		if ev, ok := nextCell(t, a, 500*time.Millisecond); ok {
			t.Fatalf("round %d: cell event %+v after this node's own delete and claim", i, ev)
		}
	}
	if n := a.CellIO().Takeovers; n != 0 {
		t.Fatalf("%d takeovers counted for this node's own deletes", n)
	}
	rec, err := a.readRecord(ctx, "i1", "dev")
	if err != nil || rec == nil || rec.Owner != a.opts.Node || rec.Will == nil {
		t.Fatalf("record after the reconnects: %+v, %v", rec, err)
	}
}

func testCellTakeover(t *testing.T, st []*Store) {
	a, b := st[0], st[1]
	ctx := context.Background()
	willA := &store.Will{Message: store.Message{Topic: "will/a", Payload: []byte("a")}}
	persistent(t, a, "dev", "t/#", willA)
	willB := &store.Will{Message: store.Message{Topic: "will/b", Payload: []byte("b")}}
	persistent(t, b, "dev", "", willB)
	ev, ok := nextCell(t, a, 5*time.Second)
	if !ok || ev.Kind != store.CellTakeover || ev.Instance != "i1" || ev.ClientID != "dev" {
		t.Fatalf("A's cell event %+v (%v), want the takeover of i1/dev", ev, ok)
	}
	// A's session layer now ends its connection: every write it makes for
	// the session it lost is a no-op.
	if err := a.SaveSession(ctx, store.Session{Instance: "i1", ClientID: "dev", ProtocolVersion: 5, Expiry: time.Hour, Will: willA}); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteSession(ctx, "i1", "dev"); err != nil { // the ending-session path
		t.Fatal(err)
	}
	if err := a.Disconnect(ctx, "i1", "dev", time.Now()); err != nil { // not served here any more
		t.Fatal(err)
	}
	rec, err := b.readRecord(ctx, "i1", "dev")
	if err != nil || rec == nil {
		t.Fatalf("B's record after A's stale writes: %v, %v", rec, err)
	}
	sess, err := b.LoadSession(ctx, "i1", "dev")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Owner != "n2" || !sess.DisconnectedAt.IsZero() || sess.Will == nil || sess.Will.Message.Topic != "will/b" ||
		sess.Subscriptions["t/#"].Filter != "t/#" {
		t.Fatalf("B's session clobbered by A: owner %q, %+v", rec.Owner, sess)
	}
	exp, err := a.ExpireSessions(ctx, time.Now().Add(2*time.Hour))
	if err != nil || len(exp.Wills) != 0 || len(exp.Sessions) != 0 {
		t.Fatalf("ExpireSessions fired a connected session: %+v, %v", exp, err)
	}
	// DisconnectAll (a restart of A) never marks another live node's sessions.
	if n, err := a.DisconnectAll(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("A's DisconnectAll marked %d of B's sessions: %v", n, err)
	}
	// B ends the connection: it owns the session, so that counts.
	if err := b.Disconnect(ctx, "i1", "dev", time.Now()); err != nil {
		t.Fatal(err)
	}
	if sess, err := a.LoadSession(ctx, "i1", "dev"); err != nil || sess.DisconnectedAt.IsZero() {
		t.Fatalf("B's Disconnect not recorded: %+v, %v", sess, err)
	}
	if a.CellIO().Takeovers != 1 || b.CellIO().Takeovers != 0 {
		t.Fatalf("takeovers: A %d, B %d; want 1, 0", a.CellIO().Takeovers, b.CellIO().Takeovers)
	}
}

// expireAll calls ExpireSessions on every store at once, rounds times,
// and returns the wills returned in all.
func expireAll(t *testing.T, st []*Store, rounds int, now func() time.Time) []store.Message {
	t.Helper()
	var mu sync.Mutex
	var wills []store.Message
	for range rounds {
		var wg sync.WaitGroup
		for _, s := range st {
			wg.Add(1)
			go func() {
				defer wg.Done()
				exp, err := s.ExpireSessions(context.Background(), now())
				if err != nil && !errors.Is(err, store.ErrClosed) {
					// Possible while a stopped server's Raft groups elect new leaders.
					t.Logf("ExpireSessions on %s: %v", s.NodeName(), err)
				}
				mu.Lock()
				wills = append(wills, exp.Wills...)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	return wills
}

// testCellWillOnce: a disconnected session's due will is returned by
// exactly one of three nodes calling ExpireSessions at once.
func testCellWillOnce(t *testing.T, st []*Store) {
	ctx := context.Background()
	for i := range 5 {
		c := fmt.Sprintf("c%d", i)
		persistent(t, st[i%3], c, "", &store.Will{Message: store.Message{Topic: "will/" + c, Payload: []byte(c)}})
		if err := st[i%3].Disconnect(ctx, "i1", c, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	wills := expireAll(t, st, 4, time.Now)
	got := map[string]int{}
	for _, w := range wills {
		got[w.Topic]++
	}
	if len(wills) != 5 || len(got) != 5 {
		t.Fatalf("wills returned %v, want each of 5 once", got)
	}
}

// TestReRaise: a queue event for an offset that the replica answering the
// pull has not applied yet (simulated: raised before the append) is raised
// again after a PullSession that fell short of it, until a pull reaches it.
func TestReRaise(t *testing.T) {
	s := openOn(t, startSingle(t), Options{})
	ctx := context.Background()
	if _, err := s.Append(ctx, []store.Message{{Instance: "i1", Topic: "other", Payload: []byte("o")}}); err != nil {
		t.Fatal(err)
	}
	persistent(t, s, "sub", "w/+", nil)
	s.TakeEvents()
	s.raiseTopics("i1", []string{"w/1"}, []uint64{2}) // announced, not readable yet
	<-s.Events()
	s.TakeEvents()
	if ents, err := s.PullSession(ctx, "i1", "sub", "w/+", 10); err != nil || len(ents) != 0 {
		t.Fatalf("pull before the append: %v, %v", ents, err)
	}
	select {
	case <-s.Events():
	case <-time.After(time.Second):
		t.Fatal("no re-raise after a pull that fell short of the raised offset")
	}
	evs := s.TakeEvents()
	if len(evs) != 1 || evs[0].Queue != "w/+" || evs[0].Last != 2 {
		t.Fatalf("re-raised %+v, want w/+ up to 2", evs)
	}
	if _, err := s.Append(ctx, []store.Message{{Instance: "i1", Topic: "w/1", QoS: 1, Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	<-s.Events()
	s.TakeEvents()
	if ents, err := s.PullSession(ctx, "i1", "sub", "w/+", 10); err != nil || len(ents) != 1 || ents[0].Offset != 2 {
		t.Fatalf("pull after the append: %v, %v", ents, err)
	}
	select {
	case <-s.Events():
		t.Fatalf("re-raised after the pull reached the offset: %+v", s.TakeEvents())
	case <-time.After(200 * time.Millisecond):
	}
}

// testCellLostNotice: a message stored without its append notice (as when
// the notice is lost while a route reconnects) still wakes the session on
// another node, through the catch-up pass, and is read.
func testCellLostNotice(t *testing.T, st []*Store) {
	a, b := st[0], st[1]
	persistent(t, a, "tail", "lost/+", nil)
	waitFor(t, "B sees A's subscription", 5*time.Second, func() bool { return len(b.SessionsOn("i1", "lost/+")) == 1 })
	retry(t, "stream exists", func() error {
		_, err := b.Append(context.Background(), []store.Message{{Instance: "i1", Topic: "other/x", QoS: 1, Payload: []byte("o")}})
		return err
	})
	a.TakeEvents()
	before := a.CellIO().CaughtUp
	// Published straight to the stream: no notice reaches A.
	m := store.Message{Instance: "i1", Topic: "lost/1", QoS: 1, Payload: []byte("tail"), Time: time.Now()}
	ack, err := b.js.Publish(context.Background(), TopicSubject(b.sub, "m", "i1", "lost/1"), store.EncodeRecord(nil, &m))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case <-a.Events():
		case <-deadline:
			t.Fatalf("the message at %d stored without a notice never woke A (caught up %d times)", ack.Sequence, a.CellIO().CaughtUp-before)
		}
		woken := false
		for _, ev := range a.TakeEvents() {
			woken = woken || ev.Queue == "lost/+" && ev.Last >= ack.Sequence
		}
		if !woken {
			continue
		}
		ents, err := a.PullSession(context.Background(), "i1", "tail", "lost/+", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) == 1 && string(ents[0].Message.Payload) == "tail" {
			break
		}
	}
	if a.CellIO().CaughtUp == before {
		t.Fatal("woken, but not by the catch-up pass")
	}
}
