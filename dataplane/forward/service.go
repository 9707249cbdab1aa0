// Package forward runs a node's forwarding rules: each rule reads the
// instance's messages matching its filter from the node's store (the
// filter's light queue, no second copy) like a consumer group whose cursor
// is kept in the store, and sends them to its sink (CloudEvents webhooks),
// at least once and in order per topic, with exponential backoff and jitter
// between attempts. A message whose delivery still fails once it is older
// than the rule's maximum age (or that the receiver refuses outright) is
// copied to the rule's dead-letter list in the store, from which it can be
// listed, replayed or purged through the node API. A paused rule reads
// nothing; a node restart resumes every rule after its committed cursor.
package forward

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
)

// Store is what the forwarder needs of the node's store: queue reads, the
// rule cursors (consumer groups) and the dead-letter lists (*store.Store,
// jsstore.Store).
type Store interface {
	store.TopicLog
	store.DeadLetterStore
	Pull(ctx context.Context, instance, queue string, after uint64, limit int) ([]store.Entry, error)
}

// Options configure a Service.
type Options struct {
	Store Store
	// Leases, when set (a cell's store), runs each rule on one node of
	// the cell at a time: the node holding the rule's lease (lease.go).
	// Nil: every rule of the node's instances runs here.
	Leases store.Leases
	// LeaseTTL is how long a rule's lease lasts without renewal (default
	// 10 s; renewed every LeaseTTL/4): a dead owner's rules move to
	// another node within it.
	LeaseTTL time.Duration
	State    *configsync.State
	// Secret fetches a rule's signing secret from the control plane (kept
	// in memory only); called when a rule with Sink.Signed starts.
	Secret func(ctx context.Context, instanceID, ruleID string) ([]byte, error)
	Sinks  SinkOptions
	Log    *slog.Logger
	// Backoff is the first retry's delay (default 200 ms), doubled per
	// attempt up to MaxBackoff (default 30 s), with jitter.
	Backoff, MaxBackoff time.Duration
	// Batch is how many messages a rule reads at once (default 256);
	// Parallel how many topics of a batch it delivers concurrently
	// (default 16; one topic's messages go one after the other).
	Batch, Parallel int
	// NewSink builds sinks (default NewSink).
	NewSink func(instanceID string, r config.Rule, secret []byte, o SinkOptions) (Sink, error)
}

type ruleKey struct{ instance, rule string }

// Service runs the forwarding rules of the instances on a node.
type Service struct {
	o Options

	mu      sync.Mutex
	runners map[ruleKey]*runner
	stats   map[ruleKey]*ruleStats
	usage   map[string]*usage
	wake    chan struct{}
}

// New returns a Service; Run starts it.
func New(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Backoff <= 0 {
		o.Backoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Parallel <= 0 {
		o.Parallel = 16
	}
	if o.NewSink == nil {
		o.NewSink = NewSink
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 10 * time.Second
	}
	if o.Sinks.Transport.MaxConnsPerHost == 0 {
		o.Sinks.Transport.MaxConnsPerHost = o.Parallel
	}
	return &Service{o: o, runners: map[ruleKey]*runner{}, stats: map[ruleKey]*ruleStats{}, usage: map[string]*usage{},
		wake: make(chan struct{}, 1)}
}

// Run follows the node's configuration and runs its rules until ctx ends.
func (s *Service) Run(ctx context.Context) {
	s.o.State.OnChange(func(ch configsync.Change) {
		switch ch.Kind {
		case config.KindRulePut, config.KindRuleDelete, config.KindSnapshot, config.KindInstancePut,
			config.KindInstanceDelete, config.KindInstanceStatus:
			s.poke()
		}
	})
	t := time.NewTicker(5 * time.Second) // a safety net; changes poke
	defer t.Stop()
	for {
		s.sync(ctx)
		select {
		case <-ctx.Done():
			s.stopAll()
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sync starts, restarts and stops runners to match the configuration.
func (s *Service) sync(ctx context.Context) {
	want := map[ruleKey]config.Rule{}
	live := map[string]bool{}
	for _, inst := range s.o.State.InstanceIDs() {
		live[inst] = true
		for _, r := range s.o.State.Rules(inst) {
			want[ruleKey{inst, r.ID}] = r
		}
	}
	s.mu.Lock()
	var stop []*runner
	var start []ruleKey
	for k, rn := range s.runners {
		if r, ok := want[k]; !ok || !reflect.DeepEqual(r, rn.rule) {
			stop = append(stop, rn)
			delete(s.runners, k)
		}
	}
	for k := range want {
		if s.runners[k] == nil {
			start = append(start, k)
		}
	}
	s.mu.Unlock()
	for _, rn := range stop {
		rn.stop()
		k := ruleKey{rn.inst, rn.rule.ID}
		if _, still := want[k]; !still && live[rn.inst] {
			s.forget(rn) // the rule was deleted: its cursor and dead letters go too
		}
	}
	for _, k := range start {
		s.startRunner(ctx, k.instance, want[k])
	}
}

func (s *Service) startRunner(ctx context.Context, inst string, r config.Rule) {
	k := ruleKey{inst, r.ID}
	s.mu.Lock()
	st := s.stats[k]
	if st == nil {
		st = newRuleStats()
		s.stats[k] = st
	}
	u := s.usage[inst]
	if u == nil {
		u = &usage{}
		s.usage[inst] = u
	}
	rn := newRunner(s, inst, r, st, u)
	s.runners[k] = rn
	s.mu.Unlock()
	rn.start(ctx)
}

func (s *Service) forget(rn *runner) {
	k := ruleKey{rn.inst, rn.rule.ID}
	s.mu.Lock()
	delete(s.stats, k)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.o.Store.DeleteGroup(ctx, rn.inst, rn.queue, rn.group); err != nil {
		s.o.Log.Warn("forget rule cursor", "rule", rn.rule.ID, "error", err)
	}
	if err := s.o.Store.DeleteDeadLetters(ctx, rn.inst, rn.rule.ID, nil); err != nil {
		s.o.Log.Warn("purge rule dead letters", "rule", rn.rule.ID, "error", err)
	}
}

func (s *Service) stopAll() {
	s.mu.Lock()
	rs := make([]*runner, 0, len(s.runners))
	for k, rn := range s.runners {
		rs = append(rs, rn)
		delete(s.runners, k)
	}
	s.mu.Unlock()
	for _, rn := range rs {
		rn.stop()
	}
}

func (s *Service) runner(inst, rule string) *runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runners[ruleKey{inst, rule}]
}

// mount is the prefix of an instance's topics in the store.
func mount(inst string) string { return inst + "/" }

// GroupName is the store cursor name of a rule (consumer group names
// cannot start with '$', so the two never meet).
func GroupName(ruleID string) string { return "$rule." + ruleID }
