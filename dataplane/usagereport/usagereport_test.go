package usagereport

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/nodelink"
)

type fakeSource struct {
	mu  sync.Mutex
	msg int64
}

func (f *fakeSource) add(n int64) { f.mu.Lock(); f.msg += n; f.mu.Unlock() }

func (f *fakeSource) DrainUsage() []config.InstanceUsage {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.msg == 0 {
		return nil
	}
	u := []config.InstanceUsage{{InstanceID: "i-aaaa", MessagesIn: f.msg}}
	f.msg = 0
	return u
}

// receiver is a control-plane stand-in that records reports and fails on
// demand; the real endpoint's idempotency is tested in billing.
type receiver struct {
	mu   sync.Mutex
	got  []nodelink.UsageReport
	fail bool
	auth string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.auth = r.Header.Get("Authorization")
	if rc.fail {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var rep nodelink.UsageReport
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.got = append(rc.got, rep)
	w.WriteHeader(http.StatusNoContent)
}

func TestReporter(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*receiver, *fakeSource, Options) {
		rc := &receiver{}
		srv := httptest.NewServer(rc)
		t.Cleanup(srv.Close)
		return rc, &fakeSource{}, Options{NodeID: "n-1", Link: &nodelink.HTTPSource{BaseURL: srv.URL, NodeID: "n-1", Token: "tok"}, Dir: t.TempDir()}
	}

	t.Run("reports carry increasing sequence numbers and the token", func(t *testing.T) {
		rc, src, o := setup(t)
		r, err := New(o, src)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			src.add(int64(i))
			if err := r.Collect(); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Collect(); err != nil { // nothing happened: no report
			t.Fatal(err)
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if len(rc.got) != 3 {
			t.Fatalf("%d reports, want 3", len(rc.got))
		}
		for i, rep := range rc.got {
			if rep.Seq != int64(i+1) || rep.NodeID != "n-1" || rep.Instances[0].MessagesIn != int64(i+1) {
				t.Errorf("report %d = %+v", i, rep)
			}
			if i > 0 && !rep.From.Equal(rc.got[i-1].To) {
				t.Errorf("report %d window starts %v, previous ended %v", i, rep.From, rc.got[i-1].To)
			}
		}
		if rc.auth != "Bearer tok" {
			t.Errorf("authorization %q", rc.auth)
		}
	})

	t.Run("undelivered reports survive a restart and keep their numbers", func(t *testing.T) {
		rc, src, o := setup(t)
		rc.fail = true
		r, _ := New(o, src)
		src.add(5)
		_ = r.Collect()
		if err := r.Flush(ctx); err == nil {
			t.Fatal("flush to a failing control plane succeeded")
		}
		src.add(7)
		_ = r.Collect()

		r2, err := New(o, src) // a restart
		if err != nil {
			t.Fatal(err)
		}
		if r2.Pending() != 2 {
			t.Fatalf("pending after restart = %d, want 2", r2.Pending())
		}
		rc.fail = false
		if err := r2.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		src.add(1)
		_ = r2.Collect()
		_ = r2.Flush(ctx)
		var seqs []int64
		var total int64
		for _, rep := range rc.got {
			seqs = append(seqs, rep.Seq)
			total += rep.Instances[0].MessagesIn
		}
		if len(seqs) != 3 || seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 || total != 13 {
			t.Fatalf("delivered seqs %v total %d; want [1 2 3] and 13", seqs, total)
		}
	})

	t.Run("run delivers a final report on shutdown", func(t *testing.T) {
		rc, src, o := setup(t)
		o.Interval = time.Hour
		r, _ := New(o, src)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		src.add(42)
		cancel()
		<-done
		if len(rc.got) != 1 || rc.got[0].Instances[0].MessagesIn != 42 {
			t.Fatalf("reports on shutdown: %+v", rc.got)
		}
	})
}

// A report the control plane refuses for good (403: it names an instance
// this node does not serve) is dropped, so later reports still flow.
func TestRefusedReportIsDropped(t *testing.T) {
	var mu sync.Mutex
	var got []int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep nodelink.UsageReport
		_ = json.NewDecoder(r.Body).Decode(&rep)
		if rep.Seq == 1 {
			http.Error(w, `{"title":"Forbidden"}`, http.StatusForbidden)
			return
		}
		mu.Lock()
		got = append(got, rep.Seq)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	src := &fakeSource{}
	r, err := New(Options{NodeID: "n-1", Link: &nodelink.HTTPSource{BaseURL: srv.URL, NodeID: "n-1", Token: "tok"}, Dir: t.TempDir()}, src)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		src.add(1)
		if err := r.Collect(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if r.Pending() != 0 || len(got) != 1 || got[0] != 2 {
		t.Fatalf("pending %d, delivered %v; want the refused report dropped and report 2 delivered", r.Pending(), got)
	}
}
