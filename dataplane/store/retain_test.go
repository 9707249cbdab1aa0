package store

import (
	"errors"
	"testing"
	"time"
)

func TestRetained(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := f.ctx
	f.s.SetLimits("i", Limits{MaxRetained: 3})
	for _, tp := range []string{"a/1", "a/2", "b/1"} {
		if err := f.s.Retain(ctx, Message{Instance: "i", Topic: tp, QoS: 1, Payload: []byte("v-" + tp)}); err != nil {
			t.Fatal(err)
		}
	}
	topics := func(filter string) []string {
		t.Helper()
		ms, err := f.s.Retained(ctx, "i", filter)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.Topic)
		}
		return out
	}
	t.Run("filter matching", func(t *testing.T) {
		if got := topics("a/+"); !equal(got, []string{"a/1", "a/2"}) {
			t.Fatalf("a/+ = %v", got)
		}
		if got := topics("#"); len(got) != 3 {
			t.Fatalf("# = %v", got)
		}
		if got := topics("b/1"); !equal(got, []string{"b/1"}) {
			t.Fatalf("b/1 = %v", got)
		}
	})
	t.Run("quota", func(t *testing.T) {
		if err := f.s.Retain(ctx, Message{Instance: "i", Topic: "c", Payload: []byte("x")}); !errors.Is(err, ErrRetainedQuota) {
			t.Fatalf("4th retained = %v, want ErrRetainedQuota", err)
		}
		if err := f.s.Retain(ctx, Message{Instance: "i", Topic: "a/1", Payload: []byte("new")}); err != nil {
			t.Fatalf("replacing within quota = %v", err)
		}
		if err := f.s.Retain(ctx, Message{Instance: "other", Topic: "c", Payload: []byte("x")}); err != nil {
			t.Fatalf("other instance = %v", err)
		}
	})
	t.Run("persists across restart", func(t *testing.T) {
		f.reopen()
		f.s.SetLimits("i", Limits{MaxRetained: 3})
		ms, err := f.s.Retained(ctx, "i", "a/1")
		if err != nil || len(ms) != 1 || string(ms[0].Payload) != "new" || !ms[0].Retain {
			t.Fatalf("a/1 after restart = %+v, %v", ms, err)
		}
		if st := f.s.Stats("i"); st.RetainedMessages != 3 || st.RetainedBytes <= 0 {
			t.Fatalf("stats after restart = %+v", st)
		}
		if err := f.s.Retain(ctx, Message{Instance: "i", Topic: "c", Payload: []byte("x")}); !errors.Is(err, ErrRetainedQuota) {
			t.Fatalf("quota after restart = %v", err)
		}
	})
	t.Run("empty payload clears", func(t *testing.T) {
		if err := f.s.Retain(ctx, Message{Instance: "i", Topic: "a/2"}); err != nil {
			t.Fatal(err)
		}
		if got := topics("a/+"); !equal(got, []string{"a/1"}) {
			t.Fatalf("a/+ after clear = %v", got)
		}
		if err := f.s.Retain(ctx, Message{Instance: "i", Topic: "c", Payload: []byte("x")}); err != nil {
			t.Fatalf("retain after clear = %v", err)
		}
	})
	t.Run("expired are not returned", func(t *testing.T) {
		f.s.Retain(ctx, Message{Instance: "other", Topic: "e", Payload: []byte("x"), Properties: Properties{MessageExpiry: 10}})
		f.clock.Add(11 * time.Second)
		if ms, _ := f.s.Retained(ctx, "other", "e"); len(ms) != 0 {
			t.Fatalf("expired retained returned: %v", ms)
		}
	})
}

// AllRetained includes the '$' topics no leading wildcard matches.
func TestAllRetainedIncludesDollarTopics(t *testing.T) {
	f := newFixture(t, Options{})
	s, ctx := f.s, f.ctx
	for _, topic := range []string{"a/b", "$app/x"} {
		if err := s.Retain(ctx, Message{Instance: "i", Topic: topic, Payload: []byte("p")}); err != nil {
			t.Fatal(err)
		}
	}
	hash, err := s.Retained(ctx, "i", "#")
	if err != nil || len(hash) != 1 || hash[0].Topic != "a/b" {
		t.Fatalf("Retained(#) = %v, %v; want only a/b", hash, err)
	}
	all, err := s.AllRetained(ctx, "i")
	if err != nil || len(all) != 2 {
		t.Fatalf("AllRetained = %v, %v; want both", all, err)
	}
}

// A message's origin (its publisher) survives the log record.
func TestMessageOriginRoundTrip(t *testing.T) {
	for _, m := range []Message{{Instance: "i", Topic: "a", Origin: "i/dev-1", Payload: []byte("x")}, {Instance: "i", Topic: "a", Payload: []byte("y")}} {
		got, err := decodeMessage(encodeMessage(nil, &m))
		if err != nil || got.Origin != m.Origin || string(got.Payload) != string(m.Payload) {
			t.Fatalf("round trip of %+v: %+v, %v", m, got, err)
		}
	}
}

// The retained count is exact at once: RetainedFull follows every Retain,
// clear, SetLimits and DeleteRetained before they return (no periodic
// refresh), and a deleted instance's retained messages go.
func TestRetainedCountExact(t *testing.T) {
	f := newFixture(t, Options{})
	s, ctx := f.s, f.ctx
	retain := func(topic, payload string) error {
		return s.Retain(ctx, Message{Instance: "i", Topic: topic, Payload: []byte(payload)})
	}
	if s.RetainedFull("i", "a") {
		t.Fatal("full without a quota")
	}
	s.SetLimits("i", Limits{MaxRetained: 2})
	for _, tp := range []string{"a", "b"} {
		if s.RetainedFull("i", tp) {
			t.Fatalf("full before %s", tp)
		}
		if err := retain(tp, "v"); err != nil {
			t.Fatal(err)
		}
	}
	if !s.RetainedFull("i", "c") || s.RetainedFull("i", "a") {
		t.Fatal("at the limit: want a new topic refused and a held one replaceable")
	}
	if err := retain("c", "v"); !errors.Is(err, ErrRetainedQuota) {
		t.Fatalf("retain beyond the quota = %v", err)
	}
	if err := retain("a", ""); err != nil { // clear
		t.Fatal(err)
	}
	if s.RetainedFull("i", "c") {
		t.Fatal("still full right after a clear")
	}
	if err := retain("c", "v"); err != nil {
		t.Fatalf("retain right after a clear = %v", err)
	}
	s.SetLimits("i", Limits{MaxRetained: 3})
	if s.RetainedFull("i", "d") {
		t.Fatal("still full right after the quota was raised")
	}
	if err := s.Retain(ctx, Message{Instance: "j", Topic: "x", Payload: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	topics, err := s.DeleteRetained(ctx, "i")
	if err != nil || !equal(topics, []string{"b", "c"}) {
		t.Fatalf("DeleteRetained = %v, %v", topics, err)
	}
	if st := s.Stats("i"); st.RetainedMessages != 0 || st.RetainedBytes != 0 {
		t.Fatalf("stats after DeleteRetained = %+v", st)
	}
	if ms, _ := s.AllRetained(ctx, "i"); len(ms) != 0 {
		t.Fatalf("retained after DeleteRetained: %v", ms)
	}
	if ms, _ := s.AllRetained(ctx, "j"); len(ms) != 1 {
		t.Fatalf("another instance's retained: %v", ms)
	}
	f.reopen()
	if st := f.s.Stats("i"); st.RetainedMessages != 0 {
		t.Fatalf("count after reopen = %d", st.RetainedMessages)
	}
}
