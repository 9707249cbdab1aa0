package sessions

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
)

func willMessage(inst string, w mqtt.Will) store.Message {
	m := store.Message{Instance: inst, Topic: w.TopicName, QoS: w.Qos, Retain: w.Retain, Payload: w.Payload}
	for _, u := range w.User {
		m.Properties.User = append(m.Properties.User, store.UserProperty{Key: u.Key, Value: u.Val})
	}
	return m
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
	h.retryDisconnects(ctx)
	res, err := h.st.ExpireSessions(ctx, now)
	// A will the store handed over is this node's to publish: one that
	// could not be stored (a cell electing a leader) is retried at the
	// next pass, not dropped.
	h.willMu.Lock()
	wills := append(h.willsDue, res.Wills...)
	h.willsDue = nil
	h.willMu.Unlock()
	for i := range wills {
		if werr := h.publishWill(ctx, wills[i]); werr != nil {
			err = errors.Join(err, werr)
			h.willMu.Lock()
			h.willsDue = append(h.willsDue, wills[i])
			h.willMu.Unlock()
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
		h.relayQoS0(m)
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
