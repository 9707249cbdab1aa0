package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/linxGnu/grocksdb"
)

func TestAppendAndPull(t *testing.T) {
	for _, pol := range []SyncPolicy{SyncBatch, SyncAlways, SyncNone} {
		t.Run(pol.String(), func(t *testing.T) {
			f := newFixture(t, Options{Sync: pol})
			m := Message{Instance: "i1", Topic: "a/b", QoS: 1, Payload: []byte("p1"),
				Properties: Properties{ContentType: "text/plain", User: []UserProperty{{"k", "v"}}}}
			offs, err := f.s.Append(f.ctx, []Message{m, {Instance: "i1", Topic: "a/b", QoS: 2, Payload: []byte("p2")}})
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if len(offs) != 2 || offs[1] != offs[0]+1 {
				t.Fatalf("offsets = %v, want two consecutive", offs)
			}
			ents, err := f.s.Pull(f.ctx, "i1", "a/b", 0, 10)
			if err != nil || len(ents) != 2 {
				t.Fatalf("Pull = %v, %v", ents, err)
			}
			got := ents[0].Message
			if ents[0].Offset != offs[0] || string(got.Payload) != "p1" || got.Properties.ContentType != "text/plain" ||
				got.Properties.User[0] != (UserProperty{"k", "v"}) || !got.Time.Equal(f.clock.Now()) || ents[1].Message.QoS != 2 {
				t.Fatalf("entry = %+v %+v", ents[0], got)
			}
			if ents, _ := f.s.Pull(f.ctx, "i1", "a/b", offs[0], 10); len(ents) != 1 || ents[0].Offset != offs[1] {
				t.Fatalf("Pull after first = %v", ents)
			}
			if ents, _ := f.s.Pull(f.ctx, "i2", "a/b", 0, 10); len(ents) != 0 {
				t.Fatalf("other instance sees %d entries", len(ents))
			}
			f.reopen()
			if n := f.s.rebuilt.Load(); n != 0 {
				t.Fatalf("clean reopen re-indexed %d records; the checkpoint was not written at Close", n)
			}
			if got := f.payloads("i1", "a/b"); !equal(got, []string{"p1", "p2"}) {
				t.Fatalf("after reopen = %v", got)
			}
			if o := f.publish("i1", "a/b", "p3"); o != offs[1]+1 {
				t.Fatalf("offset after reopen = %d, want %d", o, offs[1]+1)
			}
		})
	}
}

func TestAppendRejectsInvalidNames(t *testing.T) {
	f := newFixture(t, Options{})
	for _, m := range []Message{{Instance: "", Topic: "a"}, {Instance: "i", Topic: "a/+"}, {Instance: "i", Topic: ""}, {Instance: "i\x00", Topic: "a"}} {
		if _, err := f.s.Append(f.ctx, []Message{m}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Append(%q, %q) = %v, want ErrInvalidName", m.Instance, m.Topic, err)
		}
	}
}

func TestGroupCommit(t *testing.T) {
	f := newFixture(t, Options{Sync: SyncBatch, SyncDelay: 2 * time.Millisecond})
	const n = 200
	before := f.s.IO().Commits
	var wg sync.WaitGroup
	offs := make([]uint64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := f.s.Append(f.ctx, []Message{{Instance: "i", Topic: "t", QoS: 1, Payload: []byte("x")}})
			errs[i] = err
			if err == nil {
				offs[i] = o[0]
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Append %d: %v", i, errs[i])
		}
		if seen[offs[i]] {
			t.Fatalf("offset %d assigned twice", offs[i])
		}
		seen[offs[i]] = true
	}
	commits := f.s.IO().Commits - before
	if commits >= n/2 {
		t.Fatalf("%d appends took %d commits; want them grouped", n, commits)
	}
	if got := len(f.payloads("i", "t")); got != n {
		t.Fatalf("queue has %d entries, want %d", got, n)
	}
}

func TestAppendAfterClose(t *testing.T) {
	f := newFixture(t, Options{})
	f.s.Close()
	if _, err := f.s.Append(f.ctx, []Message{{Instance: "i", Topic: "t"}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	f.s = nil
}

func TestWildcardQueueLifecycle(t *testing.T) {
	f := newFixture(t, Options{})
	const filter = "fleet/+/telemetry"
	f.publish("i", "fleet/t1/telemetry", "before")

	t.Run("no queue before the first persistent subscription", func(t *testing.T) {
		if n := f.lqKeys("i", filter); n != 0 {
			t.Fatalf("wildcard queue has %d entries", n)
		}
		if got := f.payloads("i", "fleet/t1/telemetry"); !equal(got, []string{"before"}) {
			t.Fatalf("concrete queue = %v", got)
		}
	})
	t.Run("created by the first subscription, filled from then on", func(t *testing.T) {
		f.session("i", "c1", filter)
		f.publish("i", "fleet/t1/telemetry", "m1")
		f.publish("i", "fleet/t2/telemetry", "m2")
		f.publish("i", "fleet/t2/status", "other")
		f.publish("j", "fleet/t3/telemetry", "other instance")
		if got := f.payloads("i", filter); !equal(got, []string{"m1", "m2"}) {
			t.Fatalf("wildcard queue = %v", got)
		}
	})
	t.Run("shared by subscribers: one entry per message", func(t *testing.T) {
		f.session("i", "c2", filter)
		f.publish("i", "fleet/t1/telemetry", "m3")
		if n := f.lqKeys("i", filter); n != 3 {
			t.Fatalf("wildcard queue has %d entries, want 3", n)
		}
		if got := f.s.SessionsOn("i", filter); !equal(got, []string{"c1", "c2"}) {
			t.Fatalf("SessionsOn = %v", got)
		}
	})
	t.Run("kept while a subscriber is left", func(t *testing.T) {
		if err := f.s.Unsubscribe(f.ctx, "i", "c1", filter); err != nil {
			t.Fatal(err)
		}
		if n := f.lqKeys("i", filter); n != 3 {
			t.Fatalf("wildcard queue has %d entries, want 3", n)
		}
	})
	t.Run("survives a restart", func(t *testing.T) {
		f.reopen()
		f.publish("i", "fleet/t9/telemetry", "m4")
		if got := f.payloads("i", filter); !equal(got, []string{"m1", "m2", "m3", "m4"}) {
			t.Fatalf("wildcard queue = %v", got)
		}
	})
	t.Run("dropped when none is left", func(t *testing.T) {
		if err := f.s.DeleteSession(f.ctx, "i", "c2"); err != nil {
			t.Fatal(err)
		}
		f.publish("i", "fleet/t1/telemetry", "m5")
		if n := f.lqKeys("i", filter); n != 0 {
			t.Fatalf("dropped queue has %d entries", n)
		}
		if len(f.s.filters["i"]) != 0 {
			t.Fatalf("filters = %v", f.s.filters)
		}
		if got := f.s.SessionsOn("i", filter); len(got) != 0 {
			t.Fatalf("SessionsOn = %v", got)
		}
	})
	t.Run("recreated empty", func(t *testing.T) {
		f.session("i", "c3", filter)
		f.publish("i", "fleet/t1/telemetry", "m6")
		if got := f.payloads("i", filter); !equal(got, []string{"m6"}) {
			t.Fatalf("recreated queue = %v", got)
		}
	})
}

// TestIndexRebuiltFromLog is the crash-safety acceptance test: the index
// column family's data is deleted before reopening and everything is still
// served.
func TestIndexRebuiltFromLog(t *testing.T) {
	f := newFixture(t, Options{})
	f.session("i", "c", "a/#")
	var want []string
	for k := range 50 {
		p := fmt.Sprintf("m%d", k)
		f.publish("i", fmt.Sprintf("a/%d", k%3), p)
		want = append(want, p)
	}
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	f.s = nil
	wipeIndex(t, f.dir)

	f.open()
	if n := f.s.rebuilt.Load(); n != 50 {
		t.Fatalf("re-indexed %d records at open, want 50", n)
	}
	t.Run("wildcard queue", func(t *testing.T) {
		if got := f.payloads("i", "a/#"); !equal(got, want) {
			t.Fatalf("a/# = %v, want %v", got, want)
		}
	})
	t.Run("concrete queues", func(t *testing.T) {
		if got := f.payloads("i", "a/1"); len(got) != 17 || got[0] != "m1" {
			t.Fatalf("a/1 = %v", got)
		}
	})
	t.Run("offsets continue", func(t *testing.T) {
		f.publish("i", "a/0", "new")
		if got := f.payloads("i", "a/#"); len(got) != 51 || got[50] != "new" {
			t.Fatalf("a/# has %d entries", len(got))
		}
	})
	t.Run("RebuildIndex rebuilds in place", func(t *testing.T) {
		if err := f.s.RebuildIndex(f.ctx); err != nil {
			t.Fatal(err)
		}
		if got := f.payloads("i", "a/#"); len(got) != 51 {
			t.Fatalf("a/# has %d entries after RebuildIndex", len(got))
		}
	})
}

// wipeIndex deletes every key of the lq column family (checkpoint included)
// with raw RocksDB, as if the unlogged index had been lost.
func wipeIndex(t *testing.T, dir string) {
	t.Helper()
	opts := grocksdb.NewDefaultOptions()
	defer opts.Destroy()
	names := []string{cfDefault, cfLogName, cfLqName, cfSess, cfRetain, cfMeta}
	cfo := make([]*grocksdb.Options, len(names))
	for i := range cfo {
		cfo[i] = opts
	}
	db, hs, err := grocksdb.OpenDbColumnFamilies(opts, dir, names, cfo)
	if err != nil {
		t.Fatalf("raw open: %v", err)
	}
	wo := grocksdb.NewDefaultWriteOptions()
	defer wo.Destroy()
	if err := db.DeleteRangeCF(wo, hs[2], []byte{0}, []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	fo := grocksdb.NewDefaultFlushOptions()
	defer fo.Destroy()
	if err := db.FlushCF(hs[2], fo); err != nil {
		t.Fatal(err)
	}
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	it := db.NewIteratorCF(ro, hs[2])
	it.SeekToFirst()
	if it.Valid() {
		t.Fatal("index not empty after wipe")
	}
	it.Close()
	for _, h := range hs {
		h.Destroy()
	}
	db.Close()
}

func TestEventsCoalesce(t *testing.T) {
	f := newFixture(t, Options{})
	f.session("i", "c", "s/+")
	f.s.TakeEvents()
	var last uint64
	for k := range 5 {
		last = f.publish("i", "s/x", fmt.Sprint(k))
	}
	f.publish("i", "nobody/listens", "x")
	select {
	case <-f.s.Events():
	case <-time.After(time.Second):
		t.Fatal("no event signal")
	}
	evs := f.s.TakeEvents()
	if len(evs) != 1 || evs[0].QueueRef != (QueueRef{"i", "s/+"}) || evs[0].Last != last {
		t.Fatalf("events = %+v, want one for s/+ up to %d", evs, last)
	}
	if evs := f.s.TakeEvents(); len(evs) != 0 {
		t.Fatalf("events not cleared: %v", evs)
	}
}

func TestPullUsesTailCache(t *testing.T) {
	f := newFixture(t, Options{})
	const n = 100
	for k := range n {
		f.session("i", fmt.Sprint("c", k), "b/+")
	}
	for k := range n {
		if _, err := f.s.Resume(f.ctx, "i", fmt.Sprint("c", k)); err != nil {
			t.Fatal(err)
		}
	}
	// First pull creates the cache; later messages are served from it.
	if _, err := f.s.PullSession(f.ctx, "i", "c0", "b/+", 10); err != nil {
		t.Fatal(err)
	}
	reads := f.s.IO().StoreReads
	f.publish("i", "b/x", "hello")
	for k := range n {
		ents, err := f.s.PullSession(f.ctx, "i", fmt.Sprint("c", k), "b/+", 10)
		if err != nil || len(ents) != 1 || string(ents[0].Message.Payload) != "hello" {
			t.Fatalf("session %d pulled %v, %v", k, ents, err)
		}
	}
	if r := f.s.IO().StoreReads - reads; r > 2 {
		t.Fatalf("broadcast to %d sessions cost %d store reads", n, r)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	f := newFixture(t, Options{})
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Pull(context.Background(), "i", "q", 0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pull after Close = %v", err)
	}
	f.s = nil
}
