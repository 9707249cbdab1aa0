package forward

import (
	"context"
	"encoding/json"
	"time"

	"github.com/aeriemq/aerie/nodelink"
)

// Rules in a cell (Options.Leases set): every node of the cell follows the
// same configuration, but a rule runs on one node at a time — the holder
// of the rule's lease "rule.<instance>.<rule>". Each node's runner of the
// rule tries to take the lease every LeaseTTL/4; the holder renews it at
// that pace and publishes its figures with it (leaseFigures); a holder
// that fails to renew stops delivering at once, so it has stopped before
// its lease can expire elsewhere. A lease is taken over when it expired
// or its owner left the cell (store.Leases), and given up when the rule
// stops here (config change, shutdown), so another node takes it within
// one try interval. The new holder reads the rule's cursor from the
// store: delivery resumes after the last committed batch (at least once,
// in order per topic; a batch that was being delivered when the lease
// moved comes again). Dead-letter replays asked of any node reach the
// holder as a poke of the lease (seen at its next renewal).

// leaseFigures are what a rule's holder publishes with its lease, for the
// status answered by the other nodes.
type leaseFigures struct {
	Delivered     int64      `json:"d"`
	Failed        int64      `json:"f"`
	Retries       int64      `json:"r"`
	DeadLettered  int64      `json:"dl"`
	LastError     string     `json:"e,omitempty"`
	LastErrorAt   *time.Time `json:"ea,omitempty"`
	LastDelivered *time.Time `json:"da,omitempty"`
	Failing       bool       `json:"x,omitempty"`
	Open          bool       `json:"o,omitempty"` // the sink was built
}

func leaseName(inst, rule string) string { return "rule." + inst + "." + rule }

func (r *runner) figures() []byte {
	c := r.stats
	f := leaseFigures{Delivered: c.delivered.Load(), Failed: c.failed.Load(), Retries: c.retries.Load(),
		DeadLettered: c.deadLettered.Load(), Open: r.opened.Load()}
	c.mu.Lock()
	f.LastError, f.Failing = c.lastError, c.failing
	if !c.lastErrorAt.IsZero() {
		t := c.lastErrorAt
		f.LastErrorAt = &t
	}
	if !c.lastDelivered.IsZero() {
		t := c.lastDelivered
		f.LastDelivered = &t
	}
	c.mu.Unlock()
	b, _ := json.Marshal(f)
	return b
}

// runLeased runs the rule while this node holds its lease, until ctx ends.
func (r *runner) runLeased(ctx context.Context) {
	ls, name := r.s.o.Leases, leaseName(r.inst, r.rule.ID)
	every := r.s.o.LeaseTTL / 4
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if r.held.Load() {
			_ = ls.ReleaseLease(rctx, name) //nolint:errcheck // it expires anyway
		}
		r.held.Store(false)
	}()
	var pokes uint64
	for ctx.Err() == nil {
		l, held, err := ls.AcquireLease(ctx, name, r.s.o.LeaseTTL, r.figures())
		if err != nil || !held {
			sleep(ctx, every)
			continue
		}
		r.held.Store(true)
		pokes = l.Pokes
		r.s.o.Log.Info("forwarding rule taken on this node", "instance", r.inst, "rule", r.rule.ID)
		r.hold(ctx, name, every, &pokes)
		r.held.Store(false)
	}
}

// hold runs the rule and renews its lease until the lease is lost or ctx
// ends.
func (r *runner) hold(ctx context.Context, name string, every time.Duration, pokes *uint64) {
	ls := r.s.o.Leases
	hctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.run(hctx) }()
	defer func() { stop(); <-done }()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Renew within one interval or stop: the lease must not outlive us.
		rctx, cancel := context.WithTimeout(ctx, every)
		l, held, err := ls.AcquireLease(rctx, name, r.s.o.LeaseTTL, r.figures())
		cancel()
		if err != nil || !held {
			r.s.o.Log.Warn("forwarding rule lease lost: stopping here", "instance", r.inst, "rule", r.rule.ID, "owner", l.Owner, "error", err)
			return
		}
		if l.Pokes != *pokes {
			*pokes = l.Pokes
			r.askReplay()
		}
		if n, err := r.s.o.Store.CountDeadLetters(ctx, r.inst, r.rule.ID); err == nil {
			r.dead.Store(int64(n)) // another node may have purged the list
		}
	}
}

func (r *runner) askReplay() {
	select {
	case r.replay <- struct{}{}:
	default:
	}
}

// remoteStatus fills a status from the lease holder's published figures
// (a rule held by another node of the cell). It reports false when no
// node holds the rule.
func (s *Service) remoteStatus(ctx context.Context, inst, rule string, st *nodelink.RuleStatus) bool {
	l, err := s.o.Leases.ReadLease(ctx, leaseName(inst, rule))
	if err != nil || l.Owner == "" || time.Now().After(l.Expires) {
		return false
	}
	var f leaseFigures
	if json.Unmarshal(l.Info, &f) != nil {
		return false
	}
	st.Delivered, st.Failed, st.Retries, st.DeadLettered = f.Delivered, f.Failed, f.Retries, f.DeadLettered
	st.LastError, st.LastErrorAt, st.LastDeliveredAt = f.LastError, f.LastErrorAt, f.LastDelivered
	switch {
	case !f.Open && f.LastError != "":
		st.State = nodelink.RuleStateError
	case f.Failing:
		st.State = nodelink.RuleStateFailing
	default:
		st.State = nodelink.RuleStateActive
	}
	return true
}
