package forward

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/store"
)

// Bounds.
const (
	DefaultMaxAge  = 24 * time.Hour
	MaxDeadLetters = 10000 // per rule; beyond, the oldest are dropped (counted)
	lagCap         = 10000 // lag in messages is counted up to this
)

// ruleStats are a rule's counters; they outlive its runners (a rule
// restarted by a config change keeps counting).
type ruleStats struct {
	delivered, failed, retries, deadLettered, dropped atomic.Int64

	mu            sync.Mutex
	lastError     string
	lastErrorAt   time.Time
	lastDelivered time.Time
	failing       bool
	// replay asks the rule's runner (current or next) to replay its dead
	// letters.
	replay chan struct{}
}

func newRuleStats() *ruleStats { return &ruleStats{replay: make(chan struct{}, 1)} }

// usage is an instance's forwarded traffic since the last usage report.
type usage struct{ msgs, bytes, units atomic.Int64 }

const messageUnit = 5 * 1024

// runner delivers one rule.
type runner struct {
	s      *Service
	inst   string
	rule   config.Rule
	queue  string
	group  string
	stats  *ruleStats
	usage  *usage
	cancel context.CancelFunc
	done   chan struct{}
	replay chan struct{}
	sink   Sink
	dead   atomic.Int64 // dead letters in the list
	cursor atomic.Uint64
	held   atomic.Bool // a cell: this node holds the rule's lease (lease.go)
	opened atomic.Bool // the sink was built
}

func newRunner(s *Service, inst string, r config.Rule, st *ruleStats, u *usage) *runner {
	return &runner{s: s, inst: inst, rule: r, queue: mount(inst) + r.Filter, group: GroupName(r.ID), stats: st, usage: u,
		done: make(chan struct{}), replay: st.replay}
}

func (r *runner) maxAge() time.Duration {
	if r.rule.MaxAgeSeconds > 0 {
		return time.Duration(r.rule.MaxAgeSeconds) * time.Second
	}
	return DefaultMaxAge
}

func (r *runner) start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		defer close(r.done)
		if r.s.o.Leases != nil {
			r.runLeased(ctx)
			return
		}
		r.run(ctx)
	}()
}

func (r *runner) stop() {
	r.cancel()
	<-r.done
}

func (r *runner) noteError(err error) {
	r.stats.mu.Lock()
	r.stats.lastError, r.stats.lastErrorAt, r.stats.failing = err.Error(), time.Now().UTC(), true
	r.stats.mu.Unlock()
}

// open builds the rule's sink, fetching its secret; retried with backoff
// while it fails (the control plane may be away).
func (r *runner) open(ctx context.Context) bool {
	for attempt := 1; ; attempt++ {
		err := r.tryOpen(ctx)
		if err == nil {
			return true
		}
		r.noteError(err)
		if !sleep(ctx, r.backoff(attempt)) {
			return false
		}
	}
}

func (r *runner) tryOpen(ctx context.Context) error {
	var secret []byte
	if r.rule.Sink.Signed {
		if r.s.o.Secret == nil {
			return errors.New("no way to fetch the rule's secret on this node")
		}
		var err error
		if secret, err = r.s.o.Secret(ctx, r.inst, r.rule.ID); err != nil {
			return fmt.Errorf("fetch the rule's secret: %w", err)
		}
	}
	sink, err := r.s.o.NewSink(r.inst, r.rule, secret, r.s.o.Sinks)
	if err != nil {
		return err
	}
	r.sink = sink
	r.opened.Store(true)
	return nil
}

func (r *runner) run(ctx context.Context) {
	st := r.s.o.Store
	if n, err := st.CountDeadLetters(ctx, r.inst, r.rule.ID); err == nil {
		r.dead.Store(int64(n))
	}
	cur, err := r.startCursor(ctx)
	if err != nil {
		r.noteError(fmt.Errorf("rule cursor: %w", err))
		return
	}
	r.cursor.Store(cur)
	r.s.o.Log.Info("forwarding rule started", "instance", r.inst, "rule", r.rule.ID, "cursor", cur, "paused", r.rule.Paused)
	if r.rule.Paused {
		<-ctx.Done()
		return
	}
	if !r.open(ctx) {
		return
	}
	defer func() { r.opened.Store(false); r.sink.Close() }()
	for ctx.Err() == nil {
		select {
		case <-r.replay:
			r.replayDead(ctx)
		default:
		}
		changed := st.Changed()
		ents, err := st.Pull(ctx, r.inst, r.queue, cur, r.s.o.Batch)
		if err != nil {
			if ctx.Err() == nil {
				r.noteError(fmt.Errorf("read store: %w", err))
				sleep(ctx, time.Second)
			}
			continue
		}
		if len(ents) == 0 {
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-changed:
			case <-r.replay:
				r.replayDead(ctx)
			case <-t.C:
			}
			t.Stop()
			continue
		}
		if !r.deliverBatch(ctx, ents) {
			return // stopped: the batch comes again from the committed cursor
		}
		last := ents[len(ents)-1].Offset
		if err := st.CommitGroup(ctx, r.inst, r.queue, r.group, last); err != nil {
			r.noteError(fmt.Errorf("commit rule cursor: %w", err))
		}
		cur = last
		r.cursor.Store(cur)
	}
}

// startCursor returns the rule's committed cursor; a new rule's starts at
// the instance's last offset (it forwards what is published from now on).
func (r *runner) startCursor(ctx context.Context) (uint64, error) {
	st := r.s.o.Store
	cur, ok, err := st.GroupCursor(ctx, r.inst, r.queue, r.group)
	if err != nil || ok {
		return cur, err
	}
	if cur, err = st.LastOffset(ctx, r.inst); err != nil {
		return 0, err
	}
	if err := st.CommitGroup(ctx, r.inst, r.queue, r.group, cur); err != nil {
		return 0, err
	}
	// On a cell another node may have committed first: read it back.
	if c, ok, err := st.GroupCursor(ctx, r.inst, r.queue, r.group); err == nil && ok {
		cur = c
	}
	return cur, nil
}

// deliverBatch delivers every message of a batch (or dead-letters it):
// one topic's messages in order, up to Parallel topics at once. It returns
// false when stopped before the end.
func (r *runner) deliverBatch(ctx context.Context, ents []store.Entry) bool {
	var order []string
	byTopic := map[string][]store.Entry{}
	for _, e := range ents {
		t := e.Message.Topic
		if _, ok := byTopic[t]; !ok {
			order = append(order, t)
		}
		byTopic[t] = append(byTopic[t], e)
	}
	sem := make(chan struct{}, r.s.o.Parallel)
	var wg sync.WaitGroup
	var stopped atomic.Bool
	for _, t := range order {
		sem <- struct{}{}
		wg.Add(1)
		go func(list []store.Entry) {
			defer func() { <-sem; wg.Done() }()
			for _, e := range list {
				if !r.deliver(ctx, e) {
					stopped.Store(true)
					return
				}
			}
		}(byTopic[t])
	}
	wg.Wait()
	return !stopped.Load() && ctx.Err() == nil
}

func (r *runner) event(off uint64, m *store.Message) Event {
	ct := m.Properties.ContentType
	if ct == "" {
		ct = "application/octet-stream"
		if isJSONPayload(m.Payload) {
			ct = "application/json"
		}
	}
	return Event{ID: r.inst + "/" + strconv.FormatUint(off, 10), Source: SourceOf(r.inst), Type: EventType,
		Subject: strings.TrimPrefix(m.Topic, mount(r.inst)), Time: m.Time, ContentType: ct, Data: m.Payload, Rule: r.rule.ID, QoS: m.QoS}
}

// delivered counts a delivery.
func (r *runner) delivered(m *store.Message) {
	r.stats.delivered.Add(1)
	r.usage.msgs.Add(1)
	r.usage.bytes.Add(int64(len(m.Payload)))
	r.usage.units.Add(int64(max(1, (len(m.Payload)+messageUnit-1)/messageUnit)))
	r.stats.mu.Lock()
	r.stats.lastDelivered, r.stats.failing = time.Now().UTC(), false
	r.stats.mu.Unlock()
}

// deliver sends one message until it is delivered or dead-lettered;
// false when stopped first.
func (r *runner) deliver(ctx context.Context, e store.Entry) bool {
	ev := r.event(e.Offset, e.Message)
	maxAge := r.maxAge()
	for attempt := 1; ; attempt++ {
		err := r.sink.Deliver(ctx, ev)
		if err == nil {
			r.delivered(e.Message)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.stats.failed.Add(1)
		r.noteError(err)
		age := time.Since(e.Message.Time)
		if errors.Is(err, ErrPermanent) || age >= maxAge {
			return r.deadLetter(ctx, e, err, attempt)
		}
		d := min(r.backoff(attempt), maxAge-age+time.Millisecond)
		r.stats.retries.Add(1)
		if !sleep(ctx, d) {
			return false
		}
	}
}

// backoff is the delay after the attempt-th failure: exponential, capped,
// with jitter (half fixed, half random).
func (r *runner) backoff(attempt int) time.Duration {
	d := r.s.o.Backoff << min(attempt-1, 20)
	if d <= 0 || d > r.s.o.MaxBackoff {
		d = r.s.o.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

func (r *runner) deadLetter(ctx context.Context, e store.Entry, cause error, attempts int) bool {
	st := r.s.o.Store
	d := store.DeadLetter{Offset: e.Offset, Message: e.Message, Reason: cause.Error(), Attempts: attempts, DeadAt: time.Now().UTC()}
	for {
		err := st.PutDeadLetters(ctx, r.inst, r.rule.ID, []store.DeadLetter{d})
		if err == nil {
			break
		}
		r.noteError(fmt.Errorf("store dead letter: %w", err))
		if !sleep(ctx, time.Second) {
			return false
		}
	}
	r.stats.deadLettered.Add(1)
	if r.dead.Add(1) > MaxDeadLetters {
		if old, err := st.DeadLetters(ctx, r.inst, r.rule.ID, 0, 1); err == nil && len(old) == 1 {
			if st.DeleteDeadLetters(ctx, r.inst, r.rule.ID, []uint64{old[0].Offset}) == nil {
				r.dead.Add(-1)
				r.stats.dropped.Add(1)
			}
		}
	}
	return true
}

// replayDead tries every dead letter once, oldest first: delivered ones
// leave the list; it stops at the first failure (the receiver is still
// failing) and keeps the rest.
func (r *runner) replayDead(ctx context.Context) {
	st := r.s.o.Store
	after := uint64(0)
	for ctx.Err() == nil {
		ds, err := st.DeadLetters(ctx, r.inst, r.rule.ID, after, 100)
		if err != nil || len(ds) == 0 {
			return
		}
		for _, d := range ds {
			after = d.Offset
			if err := r.sink.Deliver(ctx, r.event(d.Offset, d.Message)); err != nil {
				if ctx.Err() == nil {
					r.stats.failed.Add(1)
					r.noteError(err)
					d.Attempts++
					d.Reason = err.Error()
					_ = st.PutDeadLetters(ctx, r.inst, r.rule.ID, []store.DeadLetter{d})
				}
				return
			}
			r.delivered(d.Message)
			if st.DeleteDeadLetters(ctx, r.inst, r.rule.ID, []uint64{d.Offset}) == nil {
				r.dead.Add(-1)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func isJSONPayload(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return json.Valid(b)
		}
		return false
	}
	return false
}
