package sessions

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
)

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
		if s.closed || s.cl.Closed() {
			// A connection mochi has ended gets nothing more: a message
			// prepared for it would count as an attempt (DUP 1 on the
			// next resume) though it could never be sent.
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
