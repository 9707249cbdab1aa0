// Package storetest is the conformance suite of store.Backend (and of
// store.TopicLog and store.DeadLetterStore, topiclog.go): every backend
// (RocksDB's *store.Store, JetStream's jsstore.Store) runs Run from its own
// tests and must pass all of it.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/store"
)

// Factory opens a fresh, empty backend for one test (and closes it in
// t.Cleanup). The backend's clock must be the real one.
type Factory func(t *testing.T) store.Backend

// Run runs the conformance suite against backends made by newBackend.
func Run(t *testing.T, newBackend Factory) {
	cases := []struct {
		name string
		fn   func(t *testing.T, b store.Backend)
	}{
		{"AppendPullExact", testAppendPull},
		{"WildcardFilters", testWildcards},
		{"SessionsCursors", testSessionsCursors},
		{"Events", testEvents},
		{"Retained", testRetained},
		{"Wills", testWills},
		{"RetentionMaxBytes", testRetentionBytes},
		{"RetentionMaxAge", testRetentionAge},
		{"TopicGroups", testTopicGroups},
		{"TopicChanged", testTopicChanged},
		{"TopicMaxAge", testTopicMaxAge},
		{"DeadLetters", testDeadLetters},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newBackend(t)) })
	}
}

const inst = "inst-1"

func msg(topic, payload string) store.Message {
	return store.Message{Instance: inst, Topic: topic, QoS: 1, Payload: []byte(payload)}
}

func appendAll(t *testing.T, b store.Backend, msgs ...store.Message) []uint64 {
	t.Helper()
	offs, err := b.Append(context.Background(), msgs)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(offs) != len(msgs) {
		t.Fatalf("Append returned %d offsets for %d messages", len(offs), len(msgs))
	}
	return offs
}

// pullAll reads a whole queue after `after`, in pages of 3 (so paging runs).
func pullAll(t *testing.T, b store.Backend, queue string, after uint64) []store.Entry {
	t.Helper()
	var out []store.Entry
	for {
		ents, err := b.Pull(context.Background(), inst, queue, after, 3)
		if err != nil {
			t.Fatalf("Pull %q: %v", queue, err)
		}
		if len(ents) == 0 {
			return out
		}
		out = append(out, ents...)
		after = ents[len(ents)-1].Offset
	}
}

func payloads(ents []store.Entry) []string {
	out := make([]string, len(ents))
	for i, e := range ents {
		out[i] = string(e.Message.Payload)
	}
	return out
}

func testAppendPull(t *testing.T, b store.Backend) {
	m := msg("a/b", "p1")
	m.Properties.ContentType = "text/plain"
	m.Properties.User = []store.UserProperty{{Key: "k", Value: "v"}}
	m.Origin = "client-x"
	offs := appendAll(t, b, m, msg("a/b", "p2"), msg("a/c", "p3"), msg("a/b", "p4"))
	for i := 1; i < len(offs); i++ {
		if offs[i] <= offs[i-1] {
			t.Fatalf("offsets not increasing: %v", offs)
		}
	}
	ents := pullAll(t, b, "a/b", 0)
	if got := payloads(ents); !slices.Equal(got, []string{"p1", "p2", "p4"}) {
		t.Fatalf("queue a/b = %v", got)
	}
	if ents[0].Offset != offs[0] || ents[2].Offset != offs[3] {
		t.Fatalf("entry offsets %d,%d, want %d,%d", ents[0].Offset, ents[2].Offset, offs[0], offs[3])
	}
	e := ents[0].Message
	if e.Topic != "a/b" || e.Instance != inst || e.QoS != 1 || e.Origin != "client-x" ||
		e.Properties.ContentType != "text/plain" || len(e.Properties.User) != 1 || e.Time.IsZero() {
		t.Fatalf("message round trip: %+v", e)
	}
	if got := payloads(pullAll(t, b, "a/b", offs[1])); !slices.Equal(got, []string{"p4"}) {
		t.Fatalf("after offset %d: %v", offs[1], got)
	}
	if got := pullAll(t, b, "nothing/here", 0); len(got) != 0 {
		t.Fatalf("empty queue returned %d entries", len(got))
	}
	if _, err := b.Append(context.Background(), []store.Message{msg("a/+", "x")}); !errors.Is(err, store.ErrInvalidName) {
		t.Fatalf("Append to a wildcard topic: %v, want ErrInvalidName", err)
	}
	// Expired messages are skipped.
	exp := msg("a/exp", "gone")
	exp.Properties.MessageExpiry = 1
	appendAll(t, b, exp, msg("a/exp", "kept"))
	time.Sleep(1100 * time.Millisecond)
	if got := payloads(pullAll(t, b, "a/exp", 0)); !slices.Equal(got, []string{"kept"}) {
		t.Fatalf("expiry: %v", got)
	}
}

// topics covers the mapping's hard cases: NATS-reserved bytes, the escape
// byte, empty levels and '$' topics.
var topics = []string{"a", "a/b", "a/b/c", "x/b", "a.b/c", "a/*", "a/>", "a b/c", "~/b", "a//b", "/a", "a/", "$SYS/a", "$SYS/a/b"}

func testWildcards(t *testing.T, b store.Backend) {
	cases := map[string][]string{
		"a/#":      {"a", "a/b", "a/b/c", "a/*", "a/>", "a//b", "a/"},
		"a/+":      {"a/b", "a/*", "a/>", "a/"},
		"+/b":      {"a/b", "x/b", "~/b"},
		"#":        {"a", "a/b", "a/b/c", "x/b", "a.b/c", "a/*", "a/>", "a b/c", "~/b", "a//b", "/a", "a/"},
		"+":        {"a"},
		"+/+/+":    {"a/b/c", "a//b"},
		"a/+/#":    {"a/b", "a/b/c", "a/*", "a/>", "a//b", "a/"},
		"$SYS/#":   {"$SYS/a", "$SYS/a/b"},
		"+/a":      {"/a"},
		"a.b/+":    {"a.b/c"},
		"a/*":      {"a/*"},
		"a//b":     {"a//b"},
		"a b/#":    {"a b/c"},
		"$SYS/a/+": {"$SYS/a/b"},
	}
	// A wildcard queue is guaranteed to hold what is appended while a
	// persistent session subscribes to it (RocksDB indexes only then).
	newSession(t, b, "w", store.NeverExpire)
	for f := range cases {
		if _, err := b.Subscribe(context.Background(), inst, "w", store.Subscription{Filter: f}); err != nil {
			t.Fatalf("Subscribe %q: %v", f, err)
		}
	}
	var msgs []store.Message
	for _, tp := range topics {
		msgs = append(msgs, msg(tp, tp))
	}
	appendAll(t, b, msgs...)
	for f, want := range cases {
		if got := payloads(pullAll(t, b, f, 0)); !slices.Equal(got, want) {
			t.Errorf("filter %q: got %q, want %q", f, got, want)
		}
	}
}

func newSession(t *testing.T, b store.Backend, client string, expiry time.Duration) {
	t.Helper()
	if err := b.SaveSession(context.Background(), store.Session{Instance: inst, ClientID: client, ProtocolVersion: 5, Expiry: expiry}); err != nil {
		t.Fatalf("SaveSession: %v", err)
	}
}

func testSessionsCursors(t *testing.T, b store.Backend) {
	ctx := context.Background()
	if _, err := b.LoadSession(ctx, inst, "c1"); !errors.Is(err, store.ErrNoSession) {
		t.Fatalf("LoadSession of a missing session: %v", err)
	}
	before := appendAll(t, b, msg("s/1", "old"))
	newSession(t, b, "c1", store.NeverExpire)
	cur, err := b.Subscribe(ctx, inst, "c1", store.Subscription{Filter: "s/+", QoS: 1})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if cur < before[0] {
		t.Fatalf("new subscription cursor %d is before the log end %d", cur, before[0])
	}
	if on := b.SessionsOn(inst, "s/+"); !slices.Equal(on, []string{"c1"}) {
		t.Fatalf("SessionsOn = %v", on)
	}
	offs := appendAll(t, b, msg("s/1", "m1"), msg("s/2", "m2"), msg("s/3", "m3"), msg("other", "no"))
	if _, err := b.Resume(ctx, inst, "c1"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	ents, err := b.PullSession(ctx, inst, "c1", "s/+", 10)
	if err != nil || !slices.Equal(payloads(ents), []string{"m1", "m2", "m3"}) {
		t.Fatalf("PullSession = %v, %v (the message before Subscribe must not be there)", payloads(ents), err)
	}
	if n := b.Inflight(inst, "c1"); n != 3 {
		t.Fatalf("Inflight = %d, want 3", n)
	}
	// Ack out of order: the cursor moves over the leading run only.
	if moved, err := b.Ack(ctx, inst, "c1", "s/+", offs[1]); err != nil || moved {
		t.Fatalf("Ack of the 2nd entry: moved=%v err=%v, want no move", moved, err)
	}
	if moved, err := b.Ack(ctx, inst, "c1", "s/+", offs[0]); err != nil || !moved {
		t.Fatalf("Ack of the 1st entry: moved=%v err=%v", moved, err)
	}
	s, err := b.LoadSession(ctx, inst, "c1")
	if err != nil || s.Cursors["s/+"] != offs[1] || s.Subscriptions["s/+"].Since != cur {
		t.Fatalf("LoadSession: cursor %d since %d err %v; want cursor %d since %d", s.Cursors["s/+"], s.Subscriptions["s/+"].Since, err, offs[1], cur)
	}
	// Reconnect: the unacknowledged m3 comes again, nothing is skipped.
	if err := b.Disconnect(ctx, inst, "c1", time.Now()); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	if _, err := b.PullSession(ctx, inst, "c1", "s/+", 10); !errors.Is(err, store.ErrNoSession) {
		t.Fatalf("PullSession of a disconnected session: %v", err)
	}
	appendAll(t, b, msg("s/4", "m4"))
	if _, err := b.Resume(ctx, inst, "c1"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	ents, err = b.PullSession(ctx, inst, "c1", "s/+", 10)
	if err != nil || !slices.Equal(payloads(ents), []string{"m3", "m4"}) {
		t.Fatalf("after resume: %v, %v; want [m3 m4]", payloads(ents), err)
	}
	infos, err := b.Sessions(ctx, inst, 100)
	if err != nil || len(infos) != 1 || infos[0].Backlog != 2 || !infos[0].Online {
		t.Fatalf("Sessions = %+v, %v", infos, err)
	}
	testUnsubscribeDelete(t, b)
}

// testUnsubscribeDelete continues testSessionsCursors: c1 subscribes to s/+.
func testUnsubscribeDelete(t *testing.T, b store.Backend) {
	ctx := context.Background()
	if err := b.Unsubscribe(ctx, inst, "c1", "s/+"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if on := b.SessionsOn(inst, "s/+"); len(on) != 0 {
		t.Fatalf("SessionsOn after Unsubscribe = %v", on)
	}
	if _, err := b.Subscribe(ctx, inst, "c1", store.Subscription{Filter: "x/#"}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := b.DeleteSession(ctx, inst, "c1"); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	if _, err := b.LoadSession(ctx, inst, "c1"); !errors.Is(err, store.ErrNoSession) {
		t.Fatalf("LoadSession after delete: %v", err)
	}
	if on := b.SessionsOn(inst, "x/#"); len(on) != 0 {
		t.Fatalf("SessionsOn after DeleteSession = %v", on)
	}
	if _, err := b.Subscribe(ctx, inst, "nobody", store.Subscription{Filter: "a"}); !errors.Is(err, store.ErrNoSession) {
		t.Fatalf("Subscribe without session: %v", err)
	}
}

func testEvents(t *testing.T, b store.Backend) {
	ctx := context.Background()
	newSession(t, b, "c1", store.NeverExpire)
	for _, f := range []string{"e/1", "e/#"} {
		if _, err := b.Subscribe(ctx, inst, "c1", store.Subscription{Filter: f, QoS: 1}); err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	}
	b.TakeEvents()
	offs := appendAll(t, b, msg("e/1", "a"), msg("e/2", "b"), msg("zzz", "c"))
	select {
	case <-b.Events():
	case <-time.After(5 * time.Second):
		t.Fatal("no event signal")
	}
	got := map[string]uint64{}
	for _, ev := range b.TakeEvents() {
		got[ev.Queue] = ev.Last
	}
	want := map[string]uint64{"e/1": offs[0], "e/#": offs[1]}
	if len(got) != len(want) || got["e/1"] != want["e/1"] || got["e/#"] != want["e/#"] {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func testRetained(t *testing.T, b store.Backend) {
	ctx := context.Background()
	b.SetLimits(inst, store.Limits{MaxRetained: 3})
	for _, tp := range []string{"r/a", "r/b", "$SYS/r"} {
		if err := b.Retain(ctx, msg(tp, "v1-"+tp)); err != nil {
			t.Fatalf("Retain %s: %v", tp, err)
		}
	}
	if err := b.Retain(ctx, msg("r/a", "v2")); err != nil {
		t.Fatalf("replacing a retained message within the quota: %v", err)
	}
	if !b.RetainedFull(inst, "r/new") || b.RetainedFull(inst, "r/a") {
		t.Fatal("RetainedFull: want full for a new topic, not for an existing one")
	}
	if err := b.Retain(ctx, msg("r/new", "x")); !errors.Is(err, store.ErrRetainedQuota) {
		t.Fatalf("Retain beyond quota: %v", err)
	}
	got, err := b.Retained(ctx, inst, "r/+")
	if err != nil || len(got) != 2 {
		t.Fatalf("Retained r/+ = %d msgs, %v", len(got), err)
	}
	byTopic := map[string]string{}
	for _, m := range got {
		byTopic[m.Topic] = string(m.Payload)
		if !m.Retain {
			t.Fatalf("retained message without Retain flag: %+v", m)
		}
	}
	if byTopic["r/a"] != "v2" || byTopic["r/b"] != "v1-r/b" {
		t.Fatalf("Retained = %v", byTopic)
	}
	if hash, _ := b.Retained(ctx, inst, "#"); len(hash) != 2 {
		t.Fatalf("'#' must not match $SYS: %d", len(hash))
	}
	if all, _ := b.AllRetained(ctx, inst); len(all) != 3 {
		t.Fatalf("AllRetained = %d, want 3", len(all))
	}
	if st := b.Stats(inst); st.RetainedMessages != 3 || st.RetainedBytes <= 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if err := b.Retain(ctx, msg("r/b", "")); err != nil {
		t.Fatalf("clear: %v", err)
	}
	if b.RetainedFull(inst, "r/new") || b.Stats(inst).RetainedMessages != 2 {
		t.Fatalf("after clear: full=%v stats=%+v", b.RetainedFull(inst, "r/new"), b.Stats(inst))
	}
	if got, _ := b.Retained(ctx, inst, "r/b"); len(got) != 0 {
		t.Fatalf("cleared topic still retained: %v", got)
	}
	if insts := b.RetainedInstances(); !slices.Equal(insts, []string{inst}) {
		t.Fatalf("RetainedInstances = %v", insts)
	}
	topics, err := b.DeleteRetained(ctx, inst)
	slices.Sort(topics)
	if err != nil || !slices.Equal(topics, []string{"$SYS/r", "r/a"}) {
		t.Fatalf("DeleteRetained = %v, %v", topics, err)
	}
	if all, _ := b.AllRetained(ctx, inst); len(all) != 0 || b.Stats(inst).RetainedMessages != 0 || len(b.RetainedInstances()) != 0 {
		t.Fatalf("after DeleteRetained: %d left", len(all))
	}
}

func testWills(t *testing.T, b store.Backend) {
	ctx := context.Background()
	will := &store.Will{Message: msg("will/c1", "bye"), Delay: 10 * time.Second}
	if err := b.SaveSession(ctx, store.Session{Instance: inst, ClientID: "c1", ProtocolVersion: 5, Expiry: time.Minute, Will: will}); err != nil {
		t.Fatalf("SaveSession: %v", err)
	}
	newSession(t, b, "c2", 5*time.Second) // no will, expires first
	if _, err := b.Resume(ctx, inst, "c1"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	t0 := time.Now()
	if n, err := b.DisconnectAll(ctx, t0); err != nil || n != 1 {
		t.Fatalf("DisconnectAll = %d, %v; want 1 (c2; c1 is resumed)", n, err)
	}
	if err := b.Disconnect(ctx, inst, "c1", t0); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	s, err := b.LoadSession(ctx, inst, "c1")
	if err != nil || s.Will == nil || string(s.Will.Message.Payload) != "bye" || s.DisconnectedAt.IsZero() {
		t.Fatalf("LoadSession will = %+v, %v", s, err)
	}
	ex, err := b.ExpireSessions(ctx, t0.Add(9*time.Second))
	if err != nil || len(ex.Wills) != 0 || len(ex.Sessions) != 1 || ex.Sessions[0].ClientID != "c2" {
		t.Fatalf("at +9s: %+v, %v; want only c2 expired", ex, err)
	}
	ex, err = b.ExpireSessions(ctx, t0.Add(11*time.Second))
	if err != nil || len(ex.Wills) != 1 || string(ex.Wills[0].Payload) != "bye" || ex.Wills[0].Topic != "will/c1" || len(ex.Sessions) != 0 {
		t.Fatalf("at +11s: %+v, %v; want the will of c1", ex, err)
	}
	if ex, _ = b.ExpireSessions(ctx, t0.Add(12*time.Second)); len(ex.Wills) != 0 {
		t.Fatalf("a will fired twice: %+v", ex)
	}
	ex, err = b.ExpireSessions(ctx, t0.Add(61*time.Second))
	if err != nil || len(ex.Sessions) != 1 || ex.Sessions[0].ClientID != "c1" {
		t.Fatalf("at +61s: %+v, %v; want c1 expired", ex, err)
	}
	if _, err := b.LoadSession(ctx, inst, "c1"); !errors.Is(err, store.ErrNoSession) {
		t.Fatalf("expired session still there: %v", err)
	}
}

// eventually polls cond (after EnforceRetention) for up to 10s.
func eventually(t *testing.T, b store.Backend, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := b.EnforceRetention(context.Background(), time.Now()); err != nil {
			t.Fatalf("EnforceRetention: %v", err)
		}
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testRetentionBytes(t *testing.T, b store.Backend) {
	const n, size, limit = 200, 1000, 20_000
	b.SetLimits(inst, store.Limits{MaxBytes: limit})
	pay := bytes.Repeat([]byte("x"), size)
	var offs []uint64
	for i := 0; i < n; i += 20 {
		batch := make([]store.Message, 20)
		for j := range batch {
			batch[j] = store.Message{Instance: inst, Topic: "ret/b", QoS: 1, Payload: pay}
		}
		offs = append(offs, appendAll(t, b, batch...)...)
	}
	eventually(t, b, "MaxBytes", func() error {
		ents := pullAll(t, b, "ret/b", 0)
		if len(ents) == 0 || ents[len(ents)-1].Offset != offs[n-1] {
			return fmt.Errorf("newest message not kept (%d entries)", len(ents))
		}
		if len(ents) > limit/size {
			return fmt.Errorf("%d entries kept, at most %d fit in %d bytes", len(ents), limit/size, limit)
		}
		if lb := b.Stats(inst).LogBytes; lb > limit || lb <= 0 {
			return fmt.Errorf("LogBytes %d, want in (0, %d]", lb, limit)
		}
		return nil
	})
}

func testRetentionAge(t *testing.T, b store.Backend) {
	// The fresh message must be seen before it ages out too: MaxAge leaves
	// it 1.5s.
	b.SetLimits(inst, store.Limits{MaxAge: 1500 * time.Millisecond})
	appendAll(t, b, msg("ret/a", "old1"), msg("ret/a", "old2"))
	time.Sleep(1600 * time.Millisecond)
	fresh := appendAll(t, b, msg("ret/a", "new"))
	eventually(t, b, "MaxAge", func() error {
		ents := pullAll(t, b, "ret/a", 0)
		if got := payloads(ents); !slices.Equal(got, []string{"new"}) || ents[0].Offset != fresh[0] {
			return fmt.Errorf("queue = %v, want [new]", got)
		}
		return nil
	})
}
