package store

import (
	"fmt"
	"github.com/linxGnu/grocksdb"
	"testing"
	"time"
)

func TestRetentionLimits(t *testing.T) {
	t.Run("max bytes drops the oldest messages of that instance only", func(t *testing.T) {
		f := newFixture(t, Options{})
		for k := range 100 {
			f.publish("small", "t", fmt.Sprintf("s%03d", k))
			f.publish("big", "t", fmt.Sprintf("b%03d", k))
		}
		per := f.s.Stats("small").LogBytes / 100
		f.s.SetLimits("small", Limits{MaxBytes: 10 * per})
		if err := f.s.EnforceRetention(f.ctx, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if st := f.s.Stats("small"); st.LogBytes > 10*per || st.LogBytes < 9*per {
			t.Fatalf("small stores %d bytes, limit %d", st.LogBytes, 10*per)
		}
		got := f.payloads("small", "t")
		if len(got) != 10 || got[0] != "s090" || got[9] != "s099" {
			t.Fatalf("small keeps %v, want the newest 10", got)
		}
		if got := f.payloads("big", "t"); len(got) != 100 {
			t.Fatalf("big keeps %d, want 100", len(got))
		}
		t.Run("persists across restart", func(t *testing.T) {
			f.reopen()
			if got := f.payloads("small", "t"); len(got) != 10 {
				t.Fatalf("small keeps %d after restart", len(got))
			}
			if st := f.s.Stats("small"); st.LogBytes > 10*per {
				t.Fatalf("stored bytes after restart = %d", st.LogBytes)
			}
		})
	})

	t.Run("max age drops whole log ranges", func(t *testing.T) {
		f := newFixture(t, Options{DefaultLimits: Limits{MaxAge: time.Hour}})
		var old []uint64
		for k := range 20 {
			old = append(old, f.publish("a", "t", fmt.Sprint("old", k)))
			old = append(old, f.publish("b", "u", fmt.Sprint("old", k)))
		}
		f.clock.Add(2 * time.Hour)
		f.publish("a", "t", "new")
		f.publish("b", "u", "new")
		if err := f.s.EnforceRetention(f.ctx, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		for inst, q := range map[string]string{"a": "t", "b": "u"} {
			if got := f.payloads(inst, q); !equal(got, []string{"new"}) {
				t.Fatalf("%s keeps %v", inst, got)
			}
		}
		for _, o := range old {
			v, err := f.s.getCF(f.s.log, logKey(o))
			if err != nil || v != nil {
				t.Fatalf("log offset %d still readable after range delete", o)
			}
		}
		if f.s.logDeleted != old[len(old)-1] {
			t.Fatalf("range-deleted up to %d, want %d", f.s.logDeleted, old[len(old)-1])
		}
		if st := f.s.Stats("a"); st.LogBytes <= 0 || st.LogBytes > 100 {
			t.Fatalf("a stores %d bytes for one message", st.LogBytes)
		}
	})

	t.Run("unlimited instance blocks range delete but not logical expiry", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.s.SetLimits("a", Limits{MaxAge: time.Minute})
		f.publish("keep", "t", "forever")
		oa := f.publish("a", "t", "old")
		f.clock.Add(time.Hour)
		f.publish("a", "t", "new")
		if err := f.s.EnforceRetention(f.ctx, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if got := f.payloads("a", "t"); !equal(got, []string{"new"}) {
			t.Fatalf("a keeps %v", got)
		}
		if got := f.payloads("keep", "t"); !equal(got, []string{"forever"}) {
			t.Fatalf("keep has %v", got)
		}
		if f.s.Stats("a").LogBytes == 0 || f.s.logDeleted >= oa {
			t.Fatalf("logDeleted = %d; the unlimited instance's message must stay", f.s.logDeleted)
		}
	})

	t.Run("compaction filter removes dead records in shared ranges", func(t *testing.T) {
		f := newFixture(t, Options{})
		f.s.SetLimits("a", Limits{MaxAge: time.Minute})
		f.publish("keep", "t", "forever")
		oa := f.publish("a", "t", "old")
		f.clock.Add(time.Hour)
		if err := f.s.EnforceRetention(f.ctx, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		// Flush and compact the log and index (CompactRange, not the
		// assertion-prone EnableManualCompaction).
		f.s.db.CompactRangeCF(f.s.log, rangeAll())
		f.s.db.CompactRangeCF(f.s.lq, rangeAll())
		if v, _ := f.s.getCF(f.s.log, logKey(oa)); v != nil {
			t.Fatal("dead record survived compaction")
		}
		if n := f.lqKeys("a", "t"); n != 0 {
			t.Fatalf("%d dead index entries survived compaction", n)
		}
		if got := f.payloads("keep", "t"); !equal(got, []string{"forever"}) {
			t.Fatalf("live record lost: %v", got)
		}
	})
}

func rangeAll() grocksdb.Range { return grocksdb.Range{Start: nil, Limit: nil} }
