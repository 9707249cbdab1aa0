package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/internal/dberr"
)

// Feed streams each node's config: a snapshot when the node is new or too
// far behind, then the outbox changes in revision order as they commit. One
// LISTEN connection per control-plane process wakes the watchers of the
// node a change is for; a slow poll covers a lost notification.
type Feed struct {
	svc       *Service
	log       *slog.Logger
	heartbeat time.Duration
	poll      time.Duration

	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
	pubs map[string]chan struct{} // HTTP publishes awaiting their node's answer
	// applied: requests waiting for a node to apply a revision
	// (WaitApplied), woken by its acknowledgements.
	applied map[string]map[chan struct{}]struct{}
	// stopped is closed when Run returns, ending every watch so a
	// graceful HTTP shutdown is not held up by open streams.
	stopped  chan struct{}
	stopOnce sync.Once
}

// NewFeed returns a feed over the service's outbox. Run must be running for
// changes to arrive promptly (otherwise they arrive at the poll interval).
func NewFeed(svc *Service, log *slog.Logger) *Feed {
	if log == nil {
		log = slog.Default()
	}
	return &Feed{svc: svc, log: log, heartbeat: 15 * time.Second, poll: 5 * time.Second, subs: map[string]map[chan struct{}]struct{}{},
		pubs: map[string]chan struct{}{}, applied: map[string]map[chan struct{}]struct{}{}, stopped: make(chan struct{})}
}

// Run listens for config notifications until ctx ends, reconnecting on
// failure.
func (f *Feed) Run(ctx context.Context) {
	defer f.stopOnce.Do(func() { close(f.stopped) })
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := f.listen(ctx)
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
		// At most 1 s: notifications are how nodes hear of changes and
		// publishes promptly once the database is back.
		backoff = min(backoff*2, time.Second)
	}
}

func (f *Feed) listen(ctx context.Context) error {
	conn, err := f.svc.db.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	defer conn.Release()
	for _, ch := range []string{ConfigChannel, PublishChannel, NodeAppliedChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	defer func() {
		// Leave the pooled connection clean.
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, _ = conn.Exec(c, "UNLISTEN *")
	}()
	f.wakeAll() // changes may have committed before LISTEN took effect
	f.wakePublishes()
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Channel == PublishChannel {
			f.wakePublish(n.Payload)
		} else if n.Channel == NodeAppliedChannel {
			if node, _, ok := ParseConfigNotification(n.Payload); ok {
				f.wakeApplied(node)
			}
		} else if node, _, ok := ParseConfigNotification(n.Payload); ok {
			f.wake(node)
		}
	}
}

func (f *Feed) wake(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs[node] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (f *Feed) wakeAll() {
	f.mu.Lock()
	nodes := make([]string, 0, len(f.subs))
	for n := range f.subs {
		nodes = append(nodes, n)
	}
	f.mu.Unlock()
	for _, n := range nodes {
		f.wake(n)
	}
}

func (f *Feed) subscribe(node string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	if f.subs[node] == nil {
		f.subs[node] = map[chan struct{}]struct{}{}
	}
	f.subs[node][ch] = struct{}{}
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		delete(f.subs[node], ch)
		if len(f.subs[node]) == 0 {
			delete(f.subs, node)
		}
		f.mu.Unlock()
	}
}

// feedBatch is how many outbox rows one read returns.
const feedBatch = 1000

// Watch sends the node's events after since to fn until ctx ends or fn
// fails: a snapshot first when since is 0 or outside the outbox, then
// changes as they commit, and a heartbeat when nothing happened for a while.
func (f *Feed) Watch(ctx context.Context, nodeID string, since int64, fn func(config.Event) error) error {
	wake, unsub := f.subscribe(nodeID)
	defer unsub()
	f.log.Info("node watching config", "node", nodeID, "since", since)
	hb := time.NewTicker(f.heartbeat)
	defer hb.Stop()
	poll := time.NewTicker(f.poll)
	defer poll.Stop()
	caughtUp := false
	for {
		evs, err := f.svc.ConfigChanges(ctx, nodeID, since, feedBatch)
		if errors.Is(err, ErrSnapshotNeeded) {
			snap, err := f.svc.ConfigSnapshot(ctx, nodeID)
			if dberr.Unavailable(err) {
				if err := f.waitForDB(ctx, hb, since, fn, err); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			f.log.Info("sending config snapshot", "node", nodeID, "since", since, "revision", snap.Revision, "instances", len(snap.Instances))
			if err := fn(config.Event{Revision: snap.Revision, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
				return err
			}
			since = snap.Revision
			if since == 0 {
				// Nothing was ever issued: wait for the first change.
				if err := f.wait(ctx, wake, hb, poll, nodeID, &since, fn); err != nil {
					return err
				}
			}
			continue
		}
		if dberr.Unavailable(err) {
			// Keep the node's stream open through a database outage (with
			// heartbeats), so it hears of changes the moment it is back.
			if err := f.waitForDB(ctx, hb, since, fn, err); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
			since = ev.Revision
		}
		if len(evs) == feedBatch {
			continue
		}
		if err := f.sendPublishes(ctx, nodeID, since, fn); dberr.Unavailable(err) {
			if err := f.waitForDB(ctx, hb, since, fn, err); err != nil {
				return err
			}
			continue
		} else if err != nil {
			return err
		}
		if !caughtUp {
			// Tell the node at once that it is caught up (it counts itself
			// in sync from the first event), not at the first heartbeat.
			caughtUp = true
			if err := fn(config.Event{Revision: since, Kind: config.KindHeartbeat}); err != nil {
				return err
			}
		}
		if err := f.wait(ctx, wake, hb, poll, nodeID, &since, fn); err != nil {
			return err
		}
	}
}

// dbRetry is how often a watch retries the database during an outage.
const dbRetry = 250 * time.Millisecond

// waitForDB waits dbRetry before a watch retries an unreachable database,
// sending the node its heartbeat meanwhile.
func (f *Feed) waitForDB(ctx context.Context, hb *time.Ticker, since int64, fn func(config.Event) error, cause error) error {
	f.log.Debug("config feed: database unreachable; retrying", "error", cause)
	t := time.NewTimer(dbRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.stopped:
			return context.Canceled
		case <-t.C:
			return nil
		case <-hb.C:
			if err := fn(config.Event{Revision: since, Kind: config.KindHeartbeat}); err != nil {
				return err
			}
		}
	}
}

// wait blocks until a change may be there, sending heartbeats meanwhile.
func (f *Feed) wait(ctx context.Context, wake chan struct{}, hb, poll *time.Ticker, nodeID string, since *int64, fn func(config.Event) error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.stopped:
			return context.Canceled
		case <-wake:
			return nil
		case <-poll.C:
			return nil
		case <-hb.C:
			if err := fn(config.Event{Revision: *since, Kind: config.KindHeartbeat}); err != nil {
				return err
			}
		}
	}
}

// sendPublishes claims the node's queued HTTP publishes and sends them.
func (f *Feed) sendPublishes(ctx context.Context, nodeID string, since int64, fn func(config.Event) error) error {
	for {
		pubs, err := f.svc.ClaimPublishes(ctx, nodeID, 100)
		if err != nil {
			return err
		}
		for i := range pubs {
			if err := fn(config.Event{Revision: since, Kind: config.KindPublish, Publish: &pubs[i]}); err != nil {
				return err
			}
		}
		if len(pubs) < 100 {
			return nil
		}
	}
}

func (f *Feed) wakePublish(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.pubs[id]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (f *Feed) wakePublishes() {
	f.mu.Lock()
	ids := make([]string, 0, len(f.pubs))
	for id := range f.pubs {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		f.wakePublish(id)
	}
}

// Publish timing: a node has PublishClaimTimeout to take a queued publish
// (else it is withdrawn: ErrNodeUnavailable) and PublishAnswerTimeout in all
// to answer (else ErrOutcomeUnknown).
const (
	PublishClaimTimeout  = 5 * time.Second
	PublishAnswerTimeout = 10 * time.Second
)

// Publish queues an HTTP publish for the instance's node and waits for the
// node's answer: the message is then published (or refused with the
// reason: quota, topic, instance state).
func (f *Feed) Publish(ctx context.Context, orgID, instanceID string, req PublishRequest) (Published, error) {
	ch := make(chan struct{}, 1)
	id, err := f.svc.EnqueuePublish(ctx, orgID, instanceID, req)
	if err != nil {
		return Published{}, err
	}
	f.mu.Lock()
	f.pubs[id] = ch
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.pubs, id)
		f.mu.Unlock()
	}()
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond) // covers a lost notification
	defer tick.Stop()
	for {
		st, err := f.svc.publishState(ctx, id)
		if err != nil {
			return Published{}, err
		}
		switch st.state {
		case "done":
			if err := publishError(st.code, st.message); err != nil {
				return Published{}, err
			}
			out := Published{ID: id, InstanceID: st.instanceID, Topic: st.topic, QoS: int(st.qos), Retain: st.retain, Bytes: len(req.Payload)}
			if st.doneAt != nil {
				out.PublishedAt = st.doneAt.UTC()
			}
			return out, nil
		case "pending":
			if time.Since(start) > PublishClaimTimeout {
				expired, err := f.svc.expirePublish(ctx, id)
				if err != nil {
					return Published{}, err
				}
				if expired {
					return Published{}, fmt.Errorf("%w: the node of instance %s did not take the message within %s; nothing was published",
						ErrNodeUnavailable, instanceID, PublishClaimTimeout)
				}
				continue // claimed meanwhile
			}
		case "expired":
			return Published{}, fmt.Errorf("%w: nothing was published", ErrNodeUnavailable)
		}
		if time.Since(start) > PublishAnswerTimeout {
			return Published{}, fmt.Errorf("%w: the node of instance %s took the message but did not answer within %s", ErrOutcomeUnknown,
				instanceID, PublishAnswerTimeout)
		}
		select {
		case <-ctx.Done():
			return Published{}, ctx.Err()
		case <-ch:
		case <-tick.C:
		}
	}
}

// LocalSource feeds one node in the same process (aerie serve): the same
// Feed and heartbeat path a remote node reaches over HTTP.
type LocalSource struct {
	Feed   *Feed
	NodeID string
}

// Watch implements configsync.Source.
func (l LocalSource) Watch(ctx context.Context, since int64, fn func(config.Event) error) error {
	return l.Feed.Watch(ctx, l.NodeID, since, fn)
}

// Ack implements configsync.Source. Requests waiting in this process for
// the node to apply their change are woken at once (other replicas learn
// it through NodeAppliedChannel).
func (l LocalSource) Ack(ctx context.Context, ack config.Ack) error {
	if err := l.Feed.svc.NodeHeartbeat(ctx, l.NodeID, ack); err != nil {
		return err
	}
	if ack.Revision > 0 {
		l.Feed.wakeApplied(l.NodeID)
	}
	return nil
}

// PublishResult implements configsync.Source.
func (l LocalSource) PublishResult(ctx context.Context, res config.PublishResult) error {
	return l.Feed.svc.CompletePublish(ctx, l.NodeID, res)
}
