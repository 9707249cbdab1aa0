package sessions

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
)

// DefaultInstance is the instance of every client when Options.InstanceOf
// is nil.
const DefaultInstance = "default"

// Options configure a Hook. Zero values pick the documented defaults.
type Options struct {
	// InstanceOf returns the instance (tenant) a client belongs to. Messages,
	// retained messages and sessions are stored under it, with topics and
	// client IDs exactly as mochi sees them. Default: DefaultInstance.
	InstanceOf func(cl *mqtt.Client) string
	// MaxInflight caps the unacknowledged QoS1/2 messages pushed to one
	// persistent session (further capped by an MQTT 5 client's receive
	// maximum). Default 128.
	MaxInflight int
	// ExpiryInterval is how often session expiry and delayed wills are
	// checked. Default 1s.
	ExpiryInterval time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// OnDrop is told of each QoS 0 message not delivered because the
	// client's outbound queue was full (metrics).
	OnDrop func(cl *mqtt.Client)
	// BacklogLimit is how long a connected client may stay behind (QoS≥1
	// messages waiting for it or unacknowledged) before it is disconnected
	// (MQTT 5: DISCONNECT 0x97); 0 or nil: no limit.
	BacklogLimit func(cl *mqtt.Client) time.Duration
	// MayReceive decides, at each delivery, whether the client may receive
	// a message on topic (as mochi sees it) under the authorization now in
	// force; nil allows everything. A refused QoS 0 message is not written;
	// a refused stored message is skipped and acknowledged (its cursor
	// advances), so it never holds the session's window. It is called on
	// the delivery path: it must be cheap (the gateway caches decisions).
	MayReceive func(cl *mqtt.Client, topic string) bool
	// OnStored is told of each QoS≥1 publish a client's publish queue made
	// durable, before it is acknowledged and handed back to mochi
	// (pipeline.go): the one moment every accepted message passes exactly
	// once, even when its publisher is gone before its PUBACK (metrics).
	OnStored func(cl *mqtt.Client, pk packets.Packet)
	// StoreRetry bounds how long a connect waits for the store to answer
	// (a cell electing a new leader after a node died takes a few
	// seconds) before the connection is closed. Default 8s.
	StoreRetry time.Duration
}

func (o *Options) defaults() {
	if o.InstanceOf == nil {
		o.InstanceOf = func(*mqtt.Client) string { return DefaultInstance }
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 128
	}
	if o.ExpiryInterval <= 0 {
		o.ExpiryInterval = time.Second
	}
	if o.StoreRetry <= 0 {
		o.StoreRetry = 8 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

type key struct{ inst, id string }

// Hook is the mochi hook that stores QoS≥1 and retained messages and serves
// persistent sessions from the store. Create it with New and register it
// with srv.AddHook(h, nil); srv.Close stops it.
type Hook struct {
	mqtt.HookBase
	st     store.Backend
	cell   store.Cell // st when it is shared by a cell's nodes (cell.go); else nil
	srv    *mqtt.Server
	opts   Options
	log    *slog.Logger
	inline *mqtt.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	// life serialises the lifecycle of each persistent session (connect,
	// resume, disconnect), striped by key: a reconnect that overtakes the
	// previous connection's OnDisconnect must not have its resumed delivery
	// state torn down by that late disconnect.
	life [64]sync.Mutex

	mu       sync.Mutex
	online   map[key]*session                         // current connection of each persistent session
	byClient map[*mqtt.Client]*session                // same, by mochi client
	shadow   map[key]*shadowWill                      // cell: clean connections whose will is also in the store
	shadowOf map[*mqtt.Client]*shadowWill             // same, by mochi client
	byQueue  map[store.QueueRef]map[*session]struct{} // online sessions per subscribed queue
	sent     map[key]map[string]uint64                // highest offset pushed per queue (DUP flag)
	// live indexes the online persistent sessions' subscriptions for QoS0
	// messages, which are not stored: they are written to those sessions
	// directly when published.
	live     *mqtt.TopicsIndex
	liveByID map[string]*session

	willMu   sync.Mutex
	willsDue []store.Message // wills handed over by the store, not yet published (expiry.go)
	discDue  []discDue       // disconnections of sessions with wills not recorded yet (cell.go)

	qmu       sync.Mutex
	queues    map[*mqtt.Client]*pubQueue // publishes waiting for the store, per client
	replaying sync.Map                   // replayKey → struct{}: publishes being handed back to mochi
}

// New returns the hook for srv backed by st.
func New(st store.Backend, srv *mqtt.Server, opts Options) *Hook {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hook{
		st: st, srv: srv, opts: opts, log: opts.Logger.With("component", "sessions"),
		ctx: ctx, cancel: cancel,
		online:   map[key]*session{},
		byClient: map[*mqtt.Client]*session{},
		shadow:   map[key]*shadowWill{},
		shadowOf: map[*mqtt.Client]*shadowWill{},
		byQueue:  map[store.QueueRef]map[*session]struct{}{},
		sent:     map[key]map[string]uint64{},
		live:     mqtt.NewTopicsIndex(),
		liveByID: map[string]*session{},
		queues:   map[*mqtt.Client]*pubQueue{},
	}
	h.cell, _ = st.(store.Cell)
	h.inline = srv.NewClient(nil, mqtt.LocalListener, "aerie-sessions", true)
	h.inline.Properties.ProtocolVersion = 5
	return h
}

// ID identifies the hook.
func (h *Hook) ID() string { return "aerie-sessions" }

// Provides lists the mochi events the hook handles.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect,
		mqtt.OnPublish, mqtt.OnSubscribed, mqtt.OnUnsubscribe,
		mqtt.OnPacketProcessed, mqtt.OnPacketEncode, mqtt.OnQosDropped, mqtt.OnWill:
		return true
	}
	return false
}

// Init (called by srv.AddHook) marks sessions left connected by a previous
// run as disconnected, loads the stored retained messages into mochi and
// starts the delivery and expiry loops.
func (h *Hook) Init(any) error {
	if _, err := h.st.DisconnectAll(h.ctx, h.opts.Now()); err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	if err := h.restoreRetained(h.ctx); err != nil {
		return err
	}
	h.wg.Add(2)
	go h.eventLoop()
	go h.expiryLoop()
	if h.cell != nil {
		h.wg.Add(1)
		go h.cellLoop()
	}
	return nil
}

// Stop ends the loops (srv.Close calls it). It does not close the store.
func (h *Hook) Stop() error {
	h.once.Do(func() {
		h.cancel()
		h.wg.Wait()
	})
	return nil
}

func (h *Hook) restoreRetained(ctx context.Context) error {
	for _, inst := range h.st.RetainedInstances() {
		msgs, err := h.st.AllRetained(ctx, inst) // "$" topics too
		if err != nil {
			return fmt.Errorf("sessions: restore retained of %s: %w", inst, err)
		}
		for i := range msgs {
			pk := publishPacket(&msgs[i])
			pk.FixedHeader.Retain = true
			pk.Created = msgs[i].Time.Unix()
			h.srv.Topics.RetainMessage(pk)
		}
	}
	return nil
}

// lifeLock locks the lifecycle stripe of k and returns its unlock.
func (h *Hook) lifeLock(k key) func() {
	f := fnv.New32a()
	_, _ = f.Write([]byte(k.inst))
	_, _ = f.Write([]byte{0})
	_, _ = f.Write([]byte(k.id))
	m := &h.life[f.Sum32()%uint32(len(h.life))]
	m.Lock()
	return m.Unlock
}

func (h *Hook) sessionOf(cl *mqtt.Client) *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byClient[cl]
}

func (h *Hook) indexLocked(s *session, queue string, sub store.Subscription) {
	h.live.Subscribe(s.liveID(), packetSubscription(sub))
	h.liveByID[s.liveID()] = s
	q := store.QueueRef{Instance: s.key.inst, Queue: queue}
	m := h.byQueue[q]
	if m == nil {
		m = map[*session]struct{}{}
		h.byQueue[q] = m
	}
	m[s] = struct{}{}
}

func (h *Hook) unindexLocked(s *session, queue string) {
	h.live.Unsubscribe(queue, s.liveID())
	q := store.QueueRef{Instance: s.key.inst, Queue: queue}
	delete(h.byQueue[q], s)
	if len(h.byQueue[q]) == 0 {
		delete(h.byQueue, q)
	}
}

// eventLoop turns the store's coalesced queue events into pumps of the
// online sessions subscribed to those queues.
func (h *Hook) eventLoop() {
	defer h.wg.Done()
	var wake []*session
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.st.Events():
		}
		wake = wake[:0]
		h.mu.Lock()
		for _, ev := range h.st.TakeEvents() {
			for s := range h.byQueue[ev.QueueRef] {
				wake = append(wake, s)
			}
		}
		h.mu.Unlock()
		for _, s := range wake {
			s.kick()
		}
	}
}
