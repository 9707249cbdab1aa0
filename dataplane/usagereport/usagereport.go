// Package usagereport sends a data-plane node's per-instance usage to the
// control plane every few seconds over the node link (nodelink.Source:
// HTTP, or in process in `aerie serve`), exactly once per report: each
// report has the next sequence number of the node, is kept on disk until
// the control plane acknowledges it, and is resent (same sequence number)
// after a failure or a restart. The control plane counts a (node, seq)
// once.
package usagereport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/nodelink"
)

// Source yields the per-instance usage accumulated since its last call
// (counters as deltas, gauges as current values).
type Source interface {
	DrainUsage() []config.InstanceUsage
}

// Sender delivers a report to the control plane (nodelink.Source does); an
// error wrapping nodelink.ErrUsageRefused refuses it for good.
type Sender interface {
	ReportUsage(ctx context.Context, rep nodelink.UsageReport) error
}

// Options configure a Reporter.
type Options struct {
	NodeID   string
	Link     Sender // the control plane
	Dir      string // where the pending reports and the sequence live
	Interval time.Duration
	Log      *slog.Logger
	Now      func() time.Time
}

// Reporter collects and delivers usage reports.
type Reporter struct {
	o       Options
	src     Source
	mu      sync.Mutex
	state   state
	from    time.Time
	flushed chan struct{}
}

// state is what survives a restart.
type state struct {
	NextSeq int64                  `json:"next_seq"`
	Pending []nodelink.UsageReport `json:"pending"`
}

// MaxPending bounds the reports kept while the control plane is away
// (one day at 10 s).
const MaxPending = 8640

// New loads the reporter's state from o.Dir.
func New(o Options, src Source) (*Reporter, error) {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Link == nil {
		return nil, errors.New("usagereport: Link is required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("usage report dir: %w", err)
	}
	r := &Reporter{o: o, src: src, state: state{NextSeq: 1}, from: o.Now().UTC(), flushed: make(chan struct{}, 1)}
	b, err := os.ReadFile(r.path())
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read usage state: %w", err)
	default:
		if err := json.Unmarshal(b, &r.state); err != nil {
			return nil, fmt.Errorf("parse usage state %s: %w", r.path(), err)
		}
	}
	return r, nil
}

func (r *Reporter) path() string { return filepath.Join(r.o.Dir, "usage-reports.json") }

// save writes the state atomically (temp file + rename).
func (r *Reporter) save() error {
	b, err := json.Marshal(r.state)
	if err != nil {
		return err
	}
	tmp := r.path() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write usage state: %w", err)
	}
	return os.Rename(tmp, r.path())
}

// Collect drains the source into a new pending report (if anything
// happened, or gauges are non-zero) and persists it.
func (r *Reporter) Collect() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.o.Now().UTC()
	usage := r.src.DrainUsage()
	from := r.from
	r.from = now
	if len(usage) == 0 {
		return nil
	}
	r.state.Pending = append(r.state.Pending, nodelink.UsageReport{
		NodeID: r.o.NodeID, Seq: r.state.NextSeq, From: from, To: now, Instances: linkUsage(usage),
	})
	r.state.NextSeq++
	if n := len(r.state.Pending); n > MaxPending {
		r.o.Log.Warn("control plane unreachable for long: dropping the oldest usage reports", "dropped", n-MaxPending)
		r.state.Pending = r.state.Pending[n-MaxPending:]
	}
	return r.save()
}

// linkUsage converts the gateway's counters to the link's.
func linkUsage(usage []config.InstanceUsage) []nodelink.InstanceUsage {
	out := make([]nodelink.InstanceUsage, len(usage))
	for i, u := range usage {
		out[i] = nodelink.InstanceUsage(u)
	}
	return out
}

// Flush sends the pending reports in order, stopping at the first failure.
func (r *Reporter) Flush(ctx context.Context) error {
	for {
		r.mu.Lock()
		if len(r.state.Pending) == 0 {
			r.mu.Unlock()
			return nil
		}
		rep := r.state.Pending[0]
		r.mu.Unlock()
		if err := r.send(ctx, rep); errors.Is(err, nodelink.ErrUsageRefused) {
			// Refused for good (the control plane says this node does not
			// serve an instance in it): retrying would block every later
			// report, so drop it.
			r.o.Log.Error("usage report refused by the control plane; dropped", "seq", rep.Seq, "error", err)
		} else if err != nil {
			return err
		}
		r.mu.Lock()
		if len(r.state.Pending) > 0 && r.state.Pending[0].Seq == rep.Seq {
			r.state.Pending = r.state.Pending[1:]
		}
		err := r.save()
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// sendTimeout bounds one delivery.
const sendTimeout = 10 * time.Second

func (r *Reporter) send(ctx context.Context, rep nodelink.UsageReport) error {
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return r.o.Link.ReportUsage(sctx, rep)
}

// Pending is how many reports wait for delivery.
func (r *Reporter) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.state.Pending)
}

// Run collects and flushes every interval until ctx ends, then collects and
// flushes once more (best effort) so a clean shutdown loses nothing.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := r.Collect(); err != nil {
				r.o.Log.Warn("collect usage", "error", err)
			}
			fctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if err := r.Flush(fctx); err != nil {
				r.o.Log.Warn("final usage report not delivered; kept for the next start", "error", err)
			}
			cancel()
			return
		case <-t.C:
			if err := r.Collect(); err != nil {
				r.o.Log.Warn("collect usage", "error", err)
			}
			if err := r.Flush(ctx); err != nil {
				r.o.Log.Warn("usage report not delivered; will retry", "error", err, "pending", r.Pending())
			}
		}
	}
}
