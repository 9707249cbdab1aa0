package configsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/nodelink"
)

// Options configure a Client.
type Options struct {
	// Source is the control plane (nodelink.HTTPSource, or
	// nodelink.LocalSource in `aerie serve`).
	Source nodelink.Source
	State  *State
	// Dir holds the disk snapshot (SnapshotFile).
	Dir string
	Log *slog.Logger
	// APIURL is the node API's URL, sent with every heartbeat.
	APIURL string
	// Endpoints and Connections go with every heartbeat.
	Endpoints   map[string]string
	Connections func() int64
	// Cell is the cell the node was started as a member of, sent with
	// every heartbeat; the control plane refuses the heartbeat when the
	// node is registered in another. Empty: no check.
	Cell string
	// AckInterval is the heartbeat period (default 5 s).
	AckInterval time.Duration
	// DeadAfter: a stream silent this long (not even a heartbeat) is
	// dropped and reopened (default 45 s).
	DeadAfter time.Duration
	// SaveDelay coalesces disk writes (default 1 s).
	SaveDelay time.Duration
	// MaxBackoff caps the wait between reconnection attempts (default
	// MaxReconnectBackoff), so the node is back in sync within about that
	// long once the control plane answers again.
	MaxBackoff time.Duration
}

// MaxReconnectBackoff is the default cap on the wait between attempts to
// reopen the watch: failures back off from 100 ms with jitter up to it,
// never further, so a node reconnects within ~1 s of the control plane
// coming back (one cheap request per node per second while it is down).
const MaxReconnectBackoff = time.Second

// ErrNodeRejected: the control plane refused this node (bad or revoked
// token, unknown node). Retrying will not help until the operator acts.
var ErrNodeRejected = nodelink.ErrNodeRejected

// Client keeps a State in step with the control plane: it loads the disk
// snapshot, follows the config stream from the last applied revision
// (converting the link's events to the data plane's), acknowledges what it
// applied, saves the state to disk, and reconnects with backoff.
type Client struct {
	o         Options
	connected atomic.Bool
	// syncedAt is when the node was last known in step with the control
	// plane (UnixNano): while the stream is open it is "now"; when it
	// closes it stays at the moment it closed. Zero: never in step since
	// the start (started is used instead).
	syncedAt atomic.Int64
	started  time.Time
	ackNow   chan struct{}
	saveNow  chan struct{}
	saveSoon chan struct{}
}

// NewClient returns a client; Run starts it.
func NewClient(o Options) (*Client, error) {
	if o.Source == nil || o.State == nil || o.Dir == "" {
		return nil, errors.New("configsync: Source, State and Dir are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.AckInterval <= 0 {
		o.AckInterval = 5 * time.Second
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 45 * time.Second
	}
	if o.SaveDelay <= 0 {
		o.SaveDelay = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = MaxReconnectBackoff
	}
	return &Client{o: o, started: time.Now(), ackNow: make(chan struct{}, 1), saveNow: make(chan struct{}, 1), saveSoon: make(chan struct{}, 1)}, nil
}

func (c *Client) path() string { return filepath.Join(c.o.Dir, SnapshotFile) }

// Load reads the disk snapshot into the state, so the node serves what it
// last knew while the control plane is unreachable. No snapshot is not an
// error; a damaged one is (the state stays empty).
func (c *Client) Load(ctx context.Context) error {
	err := c.o.State.LoadFile(c.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Connected reports whether the watch stream is open.
func (c *Client) Connected() bool { return c.connected.Load() }

// OutOfSyncFor is how long the node has not been following the control
// plane: 0 while the watch stream is open, else the time since it closed
// (or since the client was created, if it never opened).
func (c *Client) OutOfSyncFor() time.Duration {
	if c.connected.Load() {
		return 0
	}
	at := c.started
	if ns := c.syncedAt.Load(); ns != 0 {
		at = time.Unix(0, ns)
	}
	return time.Since(at)
}

// InSync returns nil while the node follows the control plane, or has
// stopped following it for at most bound; otherwise an error saying for
// how long (a readiness check).
func (c *Client) InSync(bound time.Duration) error {
	if d := c.OutOfSyncFor(); d > bound {
		return fmt.Errorf("out of sync with the control plane for %s (bound %s; applied revision %d)",
			d.Round(time.Second), bound, c.o.State.Revision())
	}
	return nil
}

// Revision is the applied revision.
func (c *Client) Revision() int64 { return c.o.State.Revision() }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run follows the control plane until ctx ends, then saves the state.
func (c *Client) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() { c.acker(ctx); done <- struct{}{} }()
	go func() { c.saver(ctx); done <- struct{}{} }()
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	failures := 0 // consecutive attempts that applied nothing
	for ctx.Err() == nil {
		began := time.Now()
		applied, err := c.stream(ctx)
		if c.connected.Swap(false) {
			c.syncedAt.Store(time.Now().UnixNano())
		}
		if ctx.Err() != nil {
			break
		}
		if applied > 0 || time.Since(began) > 10*time.Second {
			backoff = minBackoff
			failures = 0
		}
		failures++
		wait := backoff/2 + rand.N(backoff/2+1)
		// Attempts come about every second while the control plane is
		// down: warn on the first and then every 30th, not each one.
		level := slog.LevelDebug
		if failures%30 == 1 {
			level = slog.LevelWarn
		}
		if errors.Is(err, ErrNodeRejected) {
			level = slog.LevelError
			wait = max(wait, 10*time.Second)
		}
		c.o.Log.Log(ctx, level, "config stream ended; reconnecting", "error", err, "revision", c.o.State.Revision(), "in", wait.Round(time.Millisecond), "attempt", failures)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.o.MaxBackoff)
	}
	<-done
	<-done
	if err := c.o.State.SaveFile(c.path()); err != nil {
		c.o.Log.Warn("save config snapshot", "error", err)
	}
}

// stream runs one watch; it returns how many events it applied.
func (c *Client) stream(ctx context.Context) (int, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dead := time.AfterFunc(c.o.DeadAfter, func() { cancel(fmt.Errorf("no data for %s", c.o.DeadAfter)) })
	defer dead.Stop()
	since := c.o.State.Revision()
	c.o.Log.Info("following control plane", "since", since)
	applied := 0
	err := c.o.Source.Watch(sctx, since, func(le nodelink.Event) error {
		dead.Reset(c.o.DeadAfter)
		if !c.connected.Swap(true) {
			c.o.Log.Info("config stream open", "since", since)
			// Tell the control plane at once that this node is back and
			// what it has applied.
			signal(c.ackNow)
		}
		if le.Kind == nodelink.KindHeartbeat {
			return nil
		}
		ev := FromLink(le)
		before := c.o.State.Revision()
		if err := c.o.State.Apply(ev); err != nil {
			return fmt.Errorf("apply revision %d (%s): %w", ev.Revision, ev.Kind, err)
		}
		applied++
		if ev.Kind == config.KindSnapshot {
			c.o.Log.Info("applied config snapshot", "revision", c.o.State.Revision(), "instances", len(ev.Snapshot.Instances))
			signal(c.saveNow)
		} else if c.o.State.Revision() != before && definesQueues(ev.Kind) {
			signal(c.saveNow)
		} else if c.o.State.Revision() != before {
			signal(c.saveSoon)
		}
		signal(c.ackNow)
		return nil
	})
	if cause := context.Cause(sctx); cause != nil && ctx.Err() == nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	return applied, err
}

// acker sends the applied revision promptly after changes and as a
// heartbeat every AckInterval.
func (c *Client) acker(ctx context.Context) {
	t := time.NewTicker(c.o.AckInterval)
	defer t.Stop()
	refused := "" // the refusal last logged, logged once
	send := func() {
		ack := nodelink.Ack{Revision: c.o.State.Revision(), Endpoints: c.o.Endpoints, APIURL: c.o.APIURL, Cell: c.o.Cell}
		if c.o.Connections != nil {
			ack.Connections = c.o.Connections()
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := c.o.Source.Ack(actx, ack)
		switch {
		case err == nil:
			refused = ""
		case ctx.Err() != nil:
		case errors.Is(err, nodelink.ErrAckRefused):
			if err.Error() != refused {
				refused = err.Error()
				c.o.Log.Error("the control plane refuses this node's heartbeat: it counts the node down until this is fixed", "error", err)
			}
		default:
			c.o.Log.Debug("config ack failed", "error", err)
		}
	}
	send()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.ackNow:
			send()
		case <-t.C:
			send()
		}
	}
}

// saver writes the disk snapshot: at once after a full snapshot, at most
// once per SaveDelay after changes.
func (c *Client) saver(ctx context.Context) {
	save := func() {
		if err := c.o.State.SaveFile(c.path()); err != nil {
			c.o.Log.Warn("save config snapshot", "error", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.saveNow:
			save()
		case <-c.saveSoon:
			select {
			case <-ctx.Done():
				return
			case <-c.saveNow:
			case <-time.After(c.o.SaveDelay):
			}
			save()
		}
	}
}
