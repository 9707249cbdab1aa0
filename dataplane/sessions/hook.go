package sessions

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/mqtttopic"
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
	st     *store.Store
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
	byQueue  map[store.QueueRef]map[*session]struct{} // online sessions per subscribed queue
	sent     map[key]map[string]uint64                // highest offset pushed per queue (DUP flag)
	// live indexes the online persistent sessions' subscriptions for QoS0
	// messages, which are not stored: they are written to those sessions
	// directly when published.
	live     *mqtt.TopicsIndex
	liveByID map[string]*session

	qmu       sync.Mutex
	queues    map[*mqtt.Client]*pubQueue // publishes waiting for the store, per client
	replaying sync.Map                   // replayKey → struct{}: publishes being handed back to mochi
}

// New returns the hook for srv backed by st.
func New(st *store.Store, srv *mqtt.Server, opts Options) *Hook {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hook{
		st: st, srv: srv, opts: opts, log: opts.Logger.With("component", "sessions"),
		ctx: ctx, cancel: cancel,
		online:   map[key]*session{},
		byClient: map[*mqtt.Client]*session{},
		byQueue:  map[store.QueueRef]map[*session]struct{}{},
		sent:     map[key]map[string]uint64{},
		live:     mqtt.NewTopicsIndex(),
		liveByID: map[string]*session{},
		queues:   map[*mqtt.Client]*pubQueue{},
	}
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

// persistent reports whether cl's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func sessionExpiry(cl *mqtt.Client) time.Duration {
	if cl.Properties.ProtocolVersion == 5 {
		if cl.Properties.Props.SessionExpiryInterval == 0xFFFFFFFF {
			return store.NeverExpire
		}
		return time.Duration(cl.Properties.Props.SessionExpiryInterval) * time.Second
	}
	// 3.1.1 sessions never expire by themselves; the gateway sets an
	// expiry when the instance's quota caps it.
	if s := cl.Properties.Props.SessionExpiryInterval; s > 0 {
		return time.Duration(s) * time.Second
	}
	return store.NeverExpire
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

// OnSessionEstablish runs before mochi inherits an existing session: it
// retires the previous connection of the session on this node (so mochi
// neither re-subscribes it in its topic index nor resends the store-driven
// in-flight copies), applies clean start, and creates or updates the stored
// session, taking over a delayed will.
func (h *Hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	k := key{h.opts.InstanceOf(cl), cl.ID}
	defer h.lifeLock(k)()
	h.mu.Lock()
	old := h.online[k]
	h.mu.Unlock()
	if old != nil {
		h.retire(old)
	}
	if ex, ok := h.srv.Clients.Get(cl.ID); ok && ex != cl && persistent(ex) {
		for f := range ex.State.Subscriptions.GetAll() {
			if !mqtt.IsSharedFilter(f) {
				ex.State.Subscriptions.Delete(f)
			}
		}
	}
	// An MQTT 5 Clean Start 0 resumes a stored session even when this
	// connection asks for no Session Expiry: the session (its
	// subscriptions and queued messages) continues and the new expiry, 0,
	// applies when this connection ends [MQTT-3.1.2-5] [MQTT-3.2.2-3].
	resumeOnce := false
	if !pk.Connect.Clean && !persistent(cl) {
		_, err := h.st.LoadSession(h.ctx, k.inst, k.id)
		resumeOnce = err == nil
	}
	if pk.Connect.Clean || !persistent(cl) && !resumeOnce {
		if err := h.st.DeleteSession(h.ctx, k.inst, k.id); err != nil {
			h.log.Error("delete session", "client", k.id, "instance", k.inst, "error", err)
		}
		h.mu.Lock()
		delete(h.sent, k)
		h.mu.Unlock()
	}
	if !persistent(cl) && !resumeOnce {
		return // store-served from its first subscription on (attachClean)
	}
	_, err := h.st.LoadSession(h.ctx, k.inst, k.id)
	present := err == nil
	sess := store.Session{Instance: k.inst, ClientID: k.id, ProtocolVersion: cl.Properties.ProtocolVersion, Expiry: sessionExpiry(cl)}
	s := &session{h: h, cl: cl, key: k, present: present, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		subs: map[string]store.Subscription{}, inflight: map[uint16]delivery{}}
	// A will with a delay is kept in the store (so it survives restarts) and
	// published by the expiry loop; mochi keeps the immediate ones.
	if w := cl.Properties.Will; atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 && w.WillDelayInterval > 0 && persistent(cl) {
		s.will = &store.Will{Message: willMessage(k.inst, w), Delay: time.Duration(w.WillDelayInterval) * time.Second}
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	sess.Will = s.will
	if err := h.st.SaveSession(h.ctx, sess); err != nil {
		h.log.Error("save session", "client", k.id, "instance", k.inst, "error", err)
		return
	}
	h.mu.Lock()
	h.online[k] = s
	h.byClient[cl] = s
	h.mu.Unlock()
}

func willMessage(inst string, w mqtt.Will) store.Message {
	m := store.Message{Instance: inst, Topic: w.TopicName, QoS: w.Qos, Retain: w.Retain, Payload: w.Payload}
	for _, u := range w.User {
		m.Properties.User = append(m.Properties.User, store.UserProperty{Key: u.Key, Value: u.Val})
	}
	return m
}

// OnPacketEncode sets CONNACK's session-present flag for a session resumed
// from the store (mochi only knows sessions it holds in memory).
func (h *Hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || pk.SessionPresent || pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		return pk
	}
	if s := h.sessionOf(cl); s != nil && s.present {
		pk.SessionPresent = true
	}
	return pk
}

// OnSessionEstablished resumes the stored session (subscriptions and
// cursors) and starts pushing to it from its cursors.
func (h *Hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	s := h.sessionOf(cl)
	if s == nil {
		return
	}
	defer h.lifeLock(s.key)()
	h.mu.Lock()
	current := h.online[s.key] == s
	h.mu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed || !current {
		return // already taken over by a newer connection
	}
	sess, err := h.st.Resume(h.ctx, s.key.inst, s.key.id)
	if err != nil {
		h.log.Error("resume session", "client", s.key.id, "instance", s.key.inst, "error", err)
		return
	}
	h.mu.Lock()
	sent := h.sent[s.key]
	if sent == nil {
		sent = map[string]uint64{}
		h.sent[s.key] = sent
	}
	h.mu.Unlock()
	s.mu.Lock()
	s.sent = sent
	for f, sub := range sess.Subscriptions {
		cl.State.Subscriptions.Add(f, packetSubscription(sub))
		s.addSubLocked(sub)
	}
	s.mu.Unlock()
	h.wg.Add(1)
	go s.run()
	s.kick()
}

// attachClean makes a clean session store-served from its first
// subscription on, like a persistent one: its QoS≥1 deliveries come from the
// store within its window, so a client that reads slowly falls behind on its
// cursor instead of losing messages, and the node holds no per-client copy
// of the backlog. Its records go when the connection ends.
func (h *Hook) attachClean(cl *mqtt.Client) *session {
	k := key{h.opts.InstanceOf(cl), cl.ID}
	defer h.lifeLock(k)()
	if s := h.sessionOf(cl); s != nil {
		return s
	}
	if cl.Closed() {
		return nil
	}
	if err := h.st.SaveSession(h.ctx, store.Session{Instance: k.inst, ClientID: k.id, ProtocolVersion: cl.Properties.ProtocolVersion}); err != nil {
		h.log.Error("save clean session", "client", k.id, "instance", k.inst, "error", err)
		return nil
	}
	if _, err := h.st.Resume(h.ctx, k.inst, k.id); err != nil {
		h.log.Error("resume clean session", "client", k.id, "instance", k.inst, "error", err)
		return nil
	}
	s := &session{h: h, cl: cl, key: k, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		subs: map[string]store.Subscription{}, inflight: map[uint16]delivery{}, sent: map[string]uint64{}}
	h.mu.Lock()
	h.online[k] = s
	h.byClient[cl] = s
	h.sent[k] = s.sent
	h.mu.Unlock()
	h.wg.Add(1)
	go s.run()
	return s
}

func packetSubscription(sub store.Subscription) packets.Subscription {
	return packets.Subscription{Filter: sub.Filter, Qos: sub.QoS, NoLocal: sub.NoLocal,
		RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, Identifier: int(sub.Identifier)}
}

// OnSubscribed records a persistent session's granted subscriptions in the
// store and takes them out of mochi's topic index, so mochi never fans out
// (or keeps in-flight copies) for persistent sessions. Shared subscriptions
// stay with mochi.
func (h *Hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	s := h.sessionOf(cl)
	if s == nil {
		for i, f := range pk.Filters {
			if i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code && !mqtt.IsSharedFilter(f.Filter) {
				s = h.attachClean(cl)
				break
			}
		}
		if s == nil {
			return
		}
	}
	maxQoS := h.srv.Options.Capabilities.MaximumQos
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code || mqtt.IsSharedFilter(f.Filter) {
			continue
		}
		sub := store.Subscription{Filter: f.Filter, QoS: min(f.Qos, maxQoS), NoLocal: f.NoLocal,
			RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling, Identifier: uint32(f.Identifier)}
		// Store first, then leave mochi's index: a message in between is at
		// worst delivered twice (QoS1 semantics), never lost.
		since, err := h.st.Subscribe(h.ctx, s.key.inst, s.key.id, sub)
		if err != nil {
			h.log.Error("store subscription", "client", s.key.id, "filter", f.Filter, "error", err)
			continue
		}
		h.srv.Topics.Unsubscribe(f.Filter, cl.ID)
		s.mu.Lock()
		if old, ok := s.subs[sub.Filter]; ok {
			since = old.Since // an update keeps its start; Subscribe returned the cursor
		}
		sub.Since = since
		s.addSubLocked(sub)
		s.mu.Unlock()
	}
	s.kick()
}

// OnUnsubscribe removes a persistent session's subscriptions from the store.
func (h *Hook) OnUnsubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	s := h.sessionOf(cl)
	if s == nil {
		return pk
	}
	for _, f := range pk.Filters {
		s.mu.Lock()
		sub, ok := s.subs[f.Filter]
		s.mu.Unlock()
		if !ok {
			continue
		}
		if err := h.st.Unsubscribe(h.ctx, s.key.inst, s.key.id, f.Filter); err != nil {
			h.log.Error("store unsubscribe", "client", s.key.id, "filter", f.Filter, "error", err)
		}
		s.mu.Lock()
		s.delSubLocked(f.Filter)
		s.mu.Unlock()
		// Put it back in mochi's index for mochi to remove, so that UNSUBACK
		// reports success.
		h.srv.Topics.Subscribe(cl.ID, packetSubscription(sub))
	}
	return pk
}

// OnPublish stores a QoS≥1 message (once, whatever its subscribers) and a
// retained message before mochi acknowledges it: PUBACK/PUBREC follow a
// durable write (through the client's publish queue, pipeline.go), and a
// publisher stops being read while the store is behind.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl == h.inline || h.Replayed(cl, pk) {
		return pk, nil // stored by publishWill, or already stored (pipeline.go)
	}
	m := storeMessage(h.opts.InstanceOf(cl), pk)
	if pk.FixedHeader.Qos > 0 && !cl.Net.Inline {
		h.queueOf(cl).enqueue(queuedPublish{pk: pk, m: m})
		return pk, packets.ErrRejectPacket // acknowledged and fanned out once stored
	}
	if pk.FixedHeader.Retain {
		if err := h.st.Retain(h.ctx, m); err != nil {
			if !errors.Is(err, store.ErrRetainedQuota) {
				h.log.Error("store retained", "client", cl.ID, "topic", pk.TopicName, "error", err)
				return pk, reject(cl, pk)
			}
			if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
				return pk, packets.ErrQuotaExceeded
			}
			pk.FixedHeader.Retain = false // v3 cannot be told: deliver, do not retain
			m.Retain = false
		}
	}
	if pk.FixedHeader.Qos > 0 {
		if _, err := h.st.Append(h.ctx, []store.Message{m}); err != nil {
			h.log.Error("store publish", "client", cl.ID, "topic", pk.TopicName, "error", err)
			return pk, reject(cl, pk)
		}
	} else {
		h.pushQoS0(cl, pk)
	}
	return pk, nil
}

// pushQoS0 writes a QoS0 message (which is not stored) to the online
// persistent sessions subscribed to its topic.
func (h *Hook) pushQoS0(from *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	subs := h.live.Subscribers(pk.TopicName)
	type target struct {
		s   *session
		sub packets.Subscription
	}
	var ts []target
	for id, sub := range subs.Subscriptions {
		if s := h.liveByID[id]; s != nil && !(sub.NoLocal && s.cl == from) {
			ts = append(ts, target{s, sub})
		}
	}
	h.mu.Unlock()
	for _, t := range ts {
		if h.opts.MayReceive != nil && !h.opts.MayReceive(t.s.cl, pk.TopicName) {
			continue // no longer authorized (counted by the gateway)
		}
		out := pk.Copy(false)
		out.FixedHeader.Qos, out.FixedHeader.Dup = 0, false
		out.PacketID = 0
		if t.s.cl.Properties.ProtocolVersion < 5 || !t.sub.RetainAsPublished {
			out.FixedHeader.Retain = false
		}
		if t.s.cl.Properties.ProtocolVersion == 5 && len(t.sub.Identifiers) > 0 {
			out.Properties.SubscriptionIdentifier = nil
			for _, id := range t.sub.Identifiers {
				out.Properties.SubscriptionIdentifier = append(out.Properties.SubscriptionIdentifier, id)
			}
			sort.Ints(out.Properties.SubscriptionIdentifier)
		}
		// Queued like mochi's own fan-out, never blocking the publisher: a
		// client whose queue is full misses QoS 0 messages (counted).
		if !t.s.cl.Enqueue(out) && !t.s.cl.Closed() && h.opts.OnDrop != nil {
			h.opts.OnDrop(t.s.cl)
		}
	}
}

// reject refuses a publish the store could not take: an MQTT 5 QoS≥1
// publisher gets an error reason code, anyone else no acknowledgement (so a
// QoS≥1 publisher retries).
func reject(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		return packets.ErrUnspecifiedError
	}
	return packets.ErrRejectPacket
}

func storeMessage(inst string, pk packets.Packet) store.Message {
	m := store.Message{Instance: inst, Topic: pk.TopicName, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, Payload: pk.Payload, Origin: pk.Origin}
	p := &pk.Properties
	if p.PayloadFormatFlag {
		m.Properties.SetPayloadFormat(p.PayloadFormat)
	}
	m.Properties.MessageExpiry = p.MessageExpiryInterval
	m.Properties.ContentType = p.ContentType
	m.Properties.ResponseTopic = p.ResponseTopic
	m.Properties.CorrelationData = p.CorrelationData
	for _, u := range p.User {
		m.Properties.User = append(m.Properties.User, store.UserProperty{Key: u.Key, Value: u.Val})
	}
	return m
}

func publishPacket(m *store.Message) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS},
		TopicName:   m.Topic,
		Payload:     m.Payload,
	}
	p := &pk.Properties
	if m.Properties.HasPayloadFormat() {
		p.PayloadFormat, p.PayloadFormatFlag = m.Properties.PayloadFormat, true
	}
	p.ContentType = m.Properties.ContentType
	p.ResponseTopic = m.Properties.ResponseTopic
	p.CorrelationData = m.Properties.CorrelationData
	for _, u := range m.Properties.User {
		p.User = append(p.User, packets.UserProperty{Key: u.Key, Val: u.Value})
	}
	if e := m.Properties.MessageExpiry; e > 0 {
		pk.Expiry = m.Time.Unix() + int64(e)
		p.MessageExpiryInterval = e // lowered to what remains when written [MQTT-3.3.2-6]
	}
	return pk
}

// OnPacketProcessed turns a client's PUBACK/PUBCOMP (or a refusing PUBREC)
// of a store-driven delivery into a store Ack.
func (h *Hook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubcomp:
	case packets.Pubrec:
		if pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			return
		}
	default:
		return
	}
	if s := h.sessionOf(cl); s != nil {
		s.acked(pk.PacketID)
	}
}

// OnQosDropped treats a delivery mochi dropped from its in-flight map
// (message expiry) as acknowledged, so the session's window does not leak.
func (h *Hook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if s := h.sessionOf(cl); s != nil {
		s.acked(pk.PacketID)
	}
}

// OnDisconnect retires the connection's session: its store-driven in-flight
// copies leave mochi (they are redelivered from the cursors on reconnect), a
// normal DISCONNECT discards the delayed will, and the session is marked
// disconnected (or deleted when it ends with the connection).
func (h *Hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.dropQueue(cl)
	s := h.sessionOf(cl)
	if s == nil {
		return
	}
	defer h.lifeLock(s.key)()
	h.mu.Lock()
	current := h.online[s.key] == s
	if current {
		delete(h.online, s.key)
	}
	h.mu.Unlock()
	h.retire(s)
	if !current {
		return // taken over
	}
	ctx, k := h.ctx, s.key
	if expire || !persistent(cl) {
		if err := h.st.DeleteSession(ctx, k.inst, k.id); err != nil {
			h.log.Error("delete session", "client", k.id, "instance", k.inst, "error", err)
		}
		h.mu.Lock()
		delete(h.sent, k)
		h.mu.Unlock()
		return
	}
	will := s.will
	if err == nil && errors.Is(cl.StopCause(), packets.CodeDisconnect) {
		will = nil // [MQTT-3.1.2-10] normal disconnect
	}
	sess := store.Session{Instance: k.inst, ClientID: k.id, ProtocolVersion: cl.Properties.ProtocolVersion,
		Expiry: sessionExpiry(cl), Will: will}
	if err := h.st.SaveSession(ctx, sess); err != nil {
		h.log.Error("save session", "client", k.id, "instance", k.inst, "error", err)
	}
	if err := h.st.Disconnect(ctx, k.inst, k.id, h.opts.Now()); err != nil {
		h.log.Error("disconnect session", "client", k.id, "instance", k.inst, "error", err)
	}
}

// retire stops pushing to s and removes its store-driven copies from
// mochi's in-flight map (the cursor redelivers them).
func (h *Hook) retire(s *session) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	for id := range s.inflight {
		if s.cl.State.Inflight.Delete(id) {
			atomic.AddInt64(&h.srv.Info.Inflight, -1)
		}
	}
	clear(s.inflight)
	queues := append([]string(nil), s.order...)
	s.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byClient[s.cl] == s {
		delete(h.byClient, s.cl)
	}
	for _, q := range queues {
		h.unindexLocked(s, q)
	}
	if h.liveByID[s.liveID()] == s {
		delete(h.liveByID, s.liveID())
	}
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

func (h *Hook) expiryLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.ExpiryInterval)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
			if err := h.Expire(h.ctx, h.opts.Now()); err != nil && h.ctx.Err() == nil {
				h.log.Error("expire sessions", "error", err)
			}
			h.checkBacklogs(h.opts.Now())
		}
	}
}

// tooFarBehindLocked reports whether the session has not caught up (queues
// drained, deliveries acknowledged) for longer than its backlog limit.
func (s *session) tooFarBehindLocked(now time.Time) bool {
	if s.h.opts.BacklogLimit == nil || s.behindSince.IsZero() {
		return false
	}
	lim := s.h.opts.BacklogLimit(s.cl)
	return lim > 0 && now.Sub(s.behindSince) > lim
}

// checkBacklogs disconnects the online sessions that have been behind for
// longer than their backlog limit: a client that reads or acknowledges too
// slowly for its traffic is told (MQTT 5 0x97) instead of falling further
// behind until the store's retention would drop its messages.
func (h *Hook) checkBacklogs(now time.Time) {
	if h.opts.BacklogLimit == nil {
		return
	}
	h.mu.Lock()
	online := make([]*session, 0, len(h.online))
	for _, s := range h.online {
		online = append(online, s)
	}
	h.mu.Unlock()
	for _, s := range online {
		s.mu.Lock()
		behind := !s.closed && s.tooFarBehindLocked(now)
		s.mu.Unlock()
		if behind {
			h.disconnectBehind(s)
		}
	}
}

// disconnectBehind ends the connection of a session that fell further
// behind than its limit: MQTT 5 clients get DISCONNECT 0x97 (quota
// exceeded); the backlog stays in the store for a persistent session.
func (h *Hook) disconnectBehind(s *session) {
	h.log.Info("disconnecting a client too far behind", "client", s.key.id, "instance", s.key.inst)
	if s.cl.Properties.ProtocolVersion == 5 {
		_ = h.srv.DisconnectClient(s.cl, packets.ErrQuotaExceeded)
	} else {
		s.cl.Stop(packets.ErrQuotaExceeded)
	}
}

// Expire publishes the wills due at now and removes expired sessions (the
// expiry loop calls it every Options.ExpiryInterval).
func (h *Hook) Expire(ctx context.Context, now time.Time) error {
	res, err := h.st.ExpireSessions(ctx, now)
	for i := range res.Wills {
		if werr := h.publishWill(ctx, res.Wills[i]); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	for _, ref := range res.Sessions {
		k := key{ref.Instance, ref.ClientID}
		h.mu.Lock()
		delete(h.sent, k)
		h.mu.Unlock()
		if cl, ok := h.srv.Clients.Get(ref.ClientID); ok && cl.Closed() && h.opts.InstanceOf(cl) == ref.Instance {
			h.srv.Clients.Delete(ref.ClientID)
		}
	}
	if err != nil {
		return fmt.Errorf("sessions: expire: %w", err)
	}
	return nil
}

// publishWill stores a due will like any publish and hands it to mochi's
// fan-out for clean sessions.
func (h *Hook) publishWill(ctx context.Context, m store.Message) error {
	if m.Retain {
		if err := h.st.Retain(ctx, m); err != nil && !errors.Is(err, store.ErrRetainedQuota) {
			return fmt.Errorf("retain will: %w", err)
		}
	}
	if m.QoS > 0 {
		if _, err := h.st.Append(ctx, []store.Message{m}); err != nil {
			return fmt.Errorf("store will: %w", err)
		}
	}
	pk := publishPacket(&m)
	pk.FixedHeader.Retain = m.Retain
	if m.QoS > 0 {
		pk.PacketID = 1
	}
	if err := h.srv.InjectPacket(h.inline, pk); err != nil {
		return fmt.Errorf("publish will: %w", err)
	}
	if m.QoS == 0 {
		h.pushQoS0(h.inline, pk) // store-served sessions are not in mochi's index
	}
	return nil
}

// OnWill takes over a will mochi is about to send (connection lost, or
// DISCONNECT with will): it is published like the delayed ones, stored
// first when QoS≥1, so store-served sessions get it too. mochi sends no
// will the hook returns with Flag 0 (third_party/mochi-server patch 3).
// The will of a session that ends with the connection is due at once,
// whatever its delay [MQTT-3.1.3-9].
func (h *Hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if atomic.LoadUint32(&will.Flag) == 0 || will.WillDelayInterval > 0 && persistent(cl) {
		return will, nil
	}
	if err := h.publishWill(h.ctx, willMessage(h.opts.InstanceOf(cl), will)); err != nil {
		h.log.Error("publish will", "client", cl.ID, "error", err)
		return will, nil // mochi sends it the old way
	}
	will.Flag = 0
	return will, nil
}

// delivery is a store entry pushed to a client under a packet ID.
type delivery struct {
	queue string
	off   uint64
}

// session is one connection of a persistent session.
type session struct {
	h       *Hook
	cl      *mqtt.Client
	key     key
	present bool
	will    *store.Will
	wake    chan struct{}
	stop    chan struct{}

	mu       sync.Mutex
	closed   bool
	subs     map[string]store.Subscription
	order    []string // subscribed queues, sorted (round-robin order)
	next     int
	inflight map[uint16]delivery
	sent     map[string]uint64 // shared with Hook.sent; guarded by mu
	// behindSince is when the session last stopped being caught up (zero
	// while it is): the backlog limit runs from it.
	behindSince time.Time
}

func (s *session) addSubLocked(sub store.Subscription) {
	if _, ok := s.subs[sub.Filter]; !ok {
		s.order = append(s.order, sub.Filter)
		sort.Strings(s.order)
	}
	s.subs[sub.Filter] = sub
	if !s.closed {
		s.h.mu.Lock()
		s.h.indexLocked(s, sub.Filter, sub)
		s.h.mu.Unlock()
	}
}

func (s *session) delSubLocked(filter string) {
	delete(s.subs, filter)
	if i := sort.SearchStrings(s.order, filter); i < len(s.order) && s.order[i] == filter {
		s.order = append(s.order[:i], s.order[i+1:]...)
	}
	s.h.mu.Lock()
	s.h.unindexLocked(s, filter)
	s.h.mu.Unlock()
}

func (s *session) liveID() string { return s.key.inst + "\x00" + s.key.id }

func (s *session) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *session) run() {
	defer s.h.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.h.ctx.Done():
			return
		case <-s.wake:
		}
		if err := s.pump(s.h.ctx); err != nil && s.h.ctx.Err() == nil {
			s.h.log.Warn("push to session", "client", s.key.id, "instance", s.key.inst, "error", err)
		}
	}
}

// window is how many QoS≥1 deliveries may be unacknowledged at once.
func (s *session) window() int {
	w := s.h.opts.MaxInflight
	if rm := int(s.cl.Properties.Props.ReceiveMaximum); s.cl.Properties.ProtocolVersion == 5 && rm > 0 && rm < w {
		w = rm
	}
	return w
}

type outgoing struct {
	pk    packets.Packet
	queue string
	off   uint64 // QoS0: acked once written
	qos0  bool
	skip  bool // delivered through another subscription: acked, not written
}

// pump pulls from the session's cursors within its free window and writes
// the messages, until the window is full or the queues are drained.
func (s *session) pump(ctx context.Context) error {
	h := s.h
	var out []outgoing
	for {
		out = out[:0]
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil
		}
		free := s.window() - len(s.inflight)
		n := len(s.order)
		for i := 0; i < n && free > 0; i++ {
			q := s.order[(s.next+i)%n]
			ents, err := h.st.PullSession(ctx, s.key.inst, s.key.id, q, free)
			if err != nil {
				s.mu.Unlock()
				return fmt.Errorf("pull %s: %w", q, err)
			}
			for _, e := range ents {
				o, err := s.prepareLocked(q, e)
				if err != nil {
					s.mu.Unlock()
					return err
				}
				if !o.qos0 && !o.skip {
					free--
				}
				out = append(out, o)
			}
		}
		if n > 0 {
			s.next = (s.next + 1) % n
		}
		// Caught up: every queue drained and every delivery acknowledged.
		if len(out) == 0 && len(s.inflight) == 0 {
			s.behindSince = time.Time{}
		} else if s.behindSince.IsZero() {
			s.behindSince = h.opts.Now()
		}
		s.mu.Unlock()
		if len(out) == 0 {
			return nil
		}
		for _, o := range out {
			if !o.skip && !s.send(o.pk) {
				return nil // connection gone: OnDisconnect retires the session
			}
			if o.qos0 || o.skip {
				if _, err := h.st.Ack(ctx, s.key.inst, s.key.id, o.queue, o.off); err != nil {
					return fmt.Errorf("ack: %w", err)
				}
			}
		}
	}
}

// send queues a delivery on the client's outbound queue (its writer
// batches queued packets into few writes); while the queue is full the pump
// waits, so a slow reader holds up only its own session. It reports false
// once the connection is gone.
func (s *session) send(pk packets.Packet) bool {
	for !s.cl.Enqueue(pk) {
		if s.cl.Closed() || s.cl.Net.Conn == nil {
			return false
		}
		select {
		case <-s.stop:
			return false
		case <-s.h.ctx.Done():
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// prepareLocked builds the PUBLISH of entry e of queue q and, for QoS≥1,
// registers it in mochi's in-flight map under a fresh packet ID.
func (s *session) prepareLocked(q string, e store.Entry) (outgoing, error) {
	h := s.h
	m := e.Message
	o := outgoing{queue: q, off: e.Offset}
	// A message matching several subscriptions of the session is delivered
	// once, through the smallest matching filter that covers it, with the
	// highest granted QoS and every subscription identifier (as mochi does).
	owner, subQoS, rap, local := "", byte(0), false, false
	var ids []int
	for f, sb := range s.subs {
		if sb.Since >= e.Offset || !mqtttopic.Match(f, m.Topic) {
			continue
		}
		if sb.NoLocal && m.Origin != "" && m.Origin == s.key.id {
			local = true // its own message, not forwarded [MQTT-3.8.3-3]
			continue
		}
		if owner == "" || f < owner {
			owner = f
		}
		subQoS = max(subQoS, sb.QoS)
		rap = rap || sb.RetainAsPublished
		if sb.Identifier > 0 {
			ids = append(ids, int(sb.Identifier))
		}
	}
	if owner == "" && local {
		o.skip = true
		return o, nil
	}
	if owner == "" {
		owner, subQoS, rap = q, s.subs[q].QoS, s.subs[q].RetainAsPublished
	}
	if owner != q {
		o.skip = true
		return o, nil
	}
	if h.opts.MayReceive != nil && !h.opts.MayReceive(s.cl, m.Topic) {
		// Authorization changed since the subscription was granted: skip it
		// like a message delivered elsewhere (acknowledged, not written),
		// so the cursor moves past it and nothing waits in flight for it.
		o.skip = true
		return o, nil
	}
	pk := publishPacket(m)
	pk.FixedHeader.Qos = min(m.QoS, subQoS, h.srv.Options.Capabilities.MaximumQos)
	if s.cl.Properties.ProtocolVersion == 5 {
		pk.FixedHeader.Retain = rap && m.Retain
		sort.Ints(ids)
		pk.Properties.SubscriptionIdentifier = ids
	}
	pk.Created = h.opts.Now().Unix()
	if e.Offset <= s.sent[q] {
		pk.FixedHeader.Dup = true // pushed before and not acknowledged
	} else {
		s.sent[q] = e.Offset
	}
	if pk.FixedHeader.Qos == 0 {
		pk.FixedHeader.Dup = false
		o.pk, o.qos0 = pk, true
		return o, nil
	}
	for tries := 0; ; tries++ {
		id, err := s.cl.NextPacketID()
		if err != nil || tries > 0xFFFF {
			return o, fmt.Errorf("packet ids exhausted for %s: %w", s.key.id, packets.ErrQuotaExceeded)
		}
		if _, busy := s.inflight[uint16(id)]; busy {
			continue // acked in mochi, ack not yet processed here
		}
		pk.PacketID = uint16(id)
		break
	}
	if s.cl.State.Inflight.Set(pk) {
		atomic.AddInt64(&h.srv.Info.Inflight, 1)
	}
	s.inflight[pk.PacketID] = delivery{q, e.Offset}
	o.pk = pk
	return o, nil
}

// acked records the client's acknowledgement of packet id.
func (s *session) acked(id uint16) {
	s.mu.Lock()
	d, ok := s.inflight[id]
	if ok {
		delete(s.inflight, id)
	}
	s.mu.Unlock()
	if !ok {
		return // mochi's own delivery (retained on subscribe)
	}
	if _, err := s.h.st.Ack(s.h.ctx, s.key.inst, s.key.id, d.queue, d.off); err != nil && !errors.Is(err, store.ErrNoSession) {
		s.h.log.Warn("ack", "client", s.key.id, "queue", d.queue, "error", err)
	}
	s.kick()
}

func isRetainedQuota(err error) bool { return errors.Is(err, store.ErrRetainedQuota) }
