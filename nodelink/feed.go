package nodelink

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/aeriemq/aerie/internal/dberr"
)

// ErrSnapshotNeeded: a node's revision is outside what the Store's outbox
// keeps; the node must take a snapshot.
var ErrSnapshotNeeded = errors.New("config snapshot needed")

// Store is the control plane's side of the config flow: the outbox of
// config changes in revision order (tenancy implements it over Postgres).
type Store interface {
	// ConfigChanges returns the node's events after since, at most limit,
	// in revision order, or ErrSnapshotNeeded.
	ConfigChanges(ctx context.Context, nodeID string, since int64, limit int) ([]Event, error)
	// ConfigSnapshot is everything placed on the node at one revision.
	ConfigSnapshot(ctx context.Context, nodeID string) (Snapshot, error)
	// AppliedRevisions returns the revision each node has applied (a
	// missing, revoked or down node is left out, and not waited for).
	AppliedRevisions(ctx context.Context, nodes []string) (map[string]int64, error)
	// ListenChanges blocks until ctx ends or notifications break, calling
	// changed with the node of each committed change and applied with a
	// node that applied a higher revision (on any control-plane replica);
	// ready is called once listening.
	ListenChanges(ctx context.Context, ready func(), changed, applied func(nodeID string)) error
}

// Feed streams each node's config: a snapshot when the node is new or too
// far behind, then the Store's changes in revision order as they commit.
// One listener per control-plane process wakes the watchers of the node a
// change is for; a slow poll covers a lost notification.
type Feed struct {
	store     Store
	log       *slog.Logger
	heartbeat time.Duration
	poll      time.Duration

	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
	// applied: requests waiting for a node to apply a revision
	// (WaitApplied), woken by its acknowledgements.
	applied map[string]map[chan struct{}]struct{}
	// stopped is closed when Run returns, ending every watch so a
	// graceful HTTP shutdown is not held up by open streams.
	stopped  chan struct{}
	stopOnce sync.Once
}

// NewFeed returns a feed over store. Run must be running for changes to
// arrive promptly (otherwise they arrive at the poll interval).
func NewFeed(store Store, log *slog.Logger) *Feed {
	if log == nil {
		log = slog.Default()
	}
	return &Feed{store: store, log: log, heartbeat: 15 * time.Second, poll: 5 * time.Second, subs: map[string]map[chan struct{}]struct{}{},
		applied: map[string]map[chan struct{}]struct{}{}, stopped: make(chan struct{})}
}

// SetPollInterval sets how often a watch re-reads the outbox when no
// notification woke it (default 5 s); call it before Run and Watch.
func (f *Feed) SetPollInterval(d time.Duration) { f.poll = d }

// Run listens for change notifications until ctx ends, reconnecting on
// failure.
func (f *Feed) Run(ctx context.Context) {
	defer f.stopOnce.Do(func() { close(f.stopped) })
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := f.store.ListenChanges(ctx, f.wakeAll, f.wake, f.wakeApplied)
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("config feed: listen connection lost; retrying", "error", err, "in", backoff)
		f.wakeAll()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		// At most 1 s: notifications are how nodes hear of changes
		// promptly once the database is back.
		backoff = min(backoff*2, time.Second)
	}
}

func wakeSet(set map[chan struct{}]struct{}) {
	for ch := range set {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (f *Feed) wake(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wakeSet(f.subs[node])
}

func (f *Feed) wakeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, set := range f.subs {
		wakeSet(set)
	}
}

// wakeApplied wakes the requests waiting for the node.
func (f *Feed) wakeApplied(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wakeSet(f.applied[node])
}

// register adds ch to the sets of the nodes in m; the returned function
// removes it.
func (f *Feed) register(m map[string]map[chan struct{}]struct{}, ch chan struct{}, nodes ...string) func() {
	f.mu.Lock()
	for _, n := range nodes {
		if m[n] == nil {
			m[n] = map[chan struct{}]struct{}{}
		}
		m[n][ch] = struct{}{}
	}
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, n := range nodes {
			delete(m[n], ch)
			if len(m[n]) == 0 {
				delete(m, n)
			}
		}
	}
}

// feedBatch is how many outbox rows one read returns.
const feedBatch = 1000

// Watch sends the node's events after since to fn until ctx ends or fn
// fails: a snapshot first when since is 0 or outside the outbox, then
// changes as they commit, and a heartbeat when nothing happened for a while.
func (f *Feed) Watch(ctx context.Context, nodeID string, since int64, fn func(Event) error) error {
	wake := make(chan struct{}, 1)
	defer f.register(f.subs, wake, nodeID)()
	f.log.Info("node watching config", "node", nodeID, "since", since)
	w := &watch{f: f, node: nodeID, since: since, fn: fn, wake: wake,
		hb: time.NewTicker(f.heartbeat), poll: time.NewTicker(f.poll)}
	defer w.hb.Stop()
	defer w.poll.Stop()
	for {
		if err := w.step(ctx); err != nil {
			return err
		}
	}
}

// watch is one node's stream.
type watch struct {
	f        *Feed
	node     string
	since    int64
	fn       func(Event) error
	wake     chan struct{}
	hb, poll *time.Ticker
	caughtUp bool
	// sentEmpty: the node has the empty snapshot of a control plane that
	// never issued a change; it is not sent again at every poll.
	sentEmpty bool
}

// step sends what is new (a snapshot or a batch of changes) and, once
// caught up, waits for more.
func (w *watch) step(ctx context.Context) error {
	evs, err := w.f.store.ConfigChanges(ctx, w.node, w.since, feedBatch)
	if errors.Is(err, ErrSnapshotNeeded) {
		return w.snapshot(ctx)
	}
	if dberr.Unavailable(err) {
		// Keep the node's stream open through a database outage (with
		// heartbeats), so it hears of changes the moment it is back.
		return w.waitForDB(ctx, err)
	}
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if err := w.fn(ev); err != nil {
			return err
		}
		w.since = ev.Revision
	}
	if len(evs) == feedBatch {
		return nil
	}
	if !w.caughtUp {
		// Tell the node at once that it is caught up (it counts itself in
		// sync from the first event), not at the first heartbeat.
		w.caughtUp = true
		if err := w.fn(Event{Revision: w.since, Kind: KindHeartbeat}); err != nil {
			return err
		}
	}
	return w.wait(ctx)
}

func (w *watch) snapshot(ctx context.Context) error {
	snap, err := w.f.store.ConfigSnapshot(ctx, w.node)
	if dberr.Unavailable(err) {
		return w.waitForDB(ctx, err)
	}
	if err != nil {
		return err
	}
	if snap.Revision == 0 && w.sentEmpty {
		return w.wait(ctx) // still nothing issued: the node has this one
	}
	w.sentEmpty = snap.Revision == 0
	w.f.log.Info("sending config snapshot", "node", w.node, "since", w.since, "revision", snap.Revision, "instances", len(snap.Instances))
	if err := w.fn(Event{Revision: snap.Revision, Kind: KindSnapshot, Snapshot: &snap}); err != nil {
		return err
	}
	w.since = snap.Revision
	if w.since == 0 {
		// Nothing was ever issued: wait for the first change.
		return w.wait(ctx)
	}
	return nil
}

// dbRetry is how often a watch retries the database during an outage.
const dbRetry = 250 * time.Millisecond

// waitForDB waits dbRetry before a watch retries an unreachable database,
// sending the node its heartbeat meanwhile.
func (w *watch) waitForDB(ctx context.Context, cause error) error {
	w.f.log.Debug("config feed: database unreachable; retrying", "error", cause)
	t := time.NewTimer(dbRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.f.stopped:
			return context.Canceled
		case <-t.C:
			return nil
		case <-w.hb.C:
			if err := w.fn(Event{Revision: w.since, Kind: KindHeartbeat}); err != nil {
				return err
			}
		}
	}
}

// wait blocks until a change may be there, sending heartbeats meanwhile.
func (w *watch) wait(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.f.stopped:
			return context.Canceled
		case <-w.wake:
			return nil
		case <-w.poll.C:
			return nil
		case <-w.hb.C:
			if err := w.fn(Event{Revision: w.since, Kind: KindHeartbeat}); err != nil {
				return err
			}
		}
	}
}

// appliedPoll is how often a waiter re-reads the nodes' applied revisions
// in case a notification was lost (or listening is down).
const appliedPoll = 250 * time.Millisecond

// WaitApplied returns once every node in want has acknowledged applying at
// least its revision (a node the Store leaves out — down, revoked — is not
// waited for), or with ctx's error when ctx ends first (the caller
// bounds the wait with a deadline). It wakes on the node's acknowledgement
// (a notification, or directly for a node in this process), not by
// sleeping; a slow poll covers a lost notification.
func (f *Feed) WaitApplied(ctx context.Context, want map[string]int64) error {
	if len(want) == 0 {
		return nil
	}
	nodes := make([]string, 0, len(want))
	for n := range want {
		nodes = append(nodes, n)
	}
	wake := make(chan struct{}, 1)
	defer f.register(f.applied, wake, nodes...)()
	tick := time.NewTicker(appliedPoll)
	defer tick.Stop()
	for {
		got, err := f.store.AppliedRevisions(ctx, nodes)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f.log.Warn("read-your-writes: reading applied revisions", "error", err)
		} else if reached(got, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-tick.C:
		}
	}
}

func reached(got, want map[string]int64) bool {
	for n, rev := range want {
		if have, ok := got[n]; ok && have < rev {
			return false
		}
	}
	return true
}
