package sessions

import (
	"errors"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
)

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
	h.mu.Lock()
	oldShadow := h.shadow[k]
	delete(h.shadow, k) // a newer connection's record replaces the old one's
	h.mu.Unlock()
	h.takeoverWill(old, oldShadow, pk.Connect.Clean)
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
		var err error
		if resumeOnce, err = h.sessionExists(k); err != nil {
			h.refuse(cl, k, "load session", err)
			return
		}
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
		h.recordCleanWill(cl, k)
		return // store-served from its first subscription on (attachClean)
	}
	present, err := h.sessionExists(k)
	if err != nil {
		h.refuse(cl, k, "load session", err)
		return
	}
	sess := store.Session{Instance: k.inst, ClientID: k.id, ProtocolVersion: cl.Properties.ProtocolVersion, Expiry: sessionExpiry(cl)}
	s := &session{h: h, cl: cl, key: k, present: present, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		subs: map[string]store.Subscription{}, inflight: map[uint16]delivery{}}
	// A will with a delay is kept in the store (so it survives restarts) and
	// published by the expiry loop; mochi keeps the immediate ones.
	if w := cl.Properties.Will; atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 && h.keepsWill(cl, w) {
		s.will = &store.Will{Message: willMessage(k.inst, w), Delay: time.Duration(w.WillDelayInterval) * time.Second}
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	sess.Will = s.will
	if err := h.st.SaveSession(h.ctx, sess); err != nil {
		h.refuse(cl, k, "save session", err)
		return
	}
	h.mu.Lock()
	h.online[k] = s
	h.byClient[cl] = s
	h.mu.Unlock()
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
	sess, err := h.resume(s.key)
	if err != nil {
		// Connected but not served would be silent loss for the client:
		// end the connection instead; it reconnects and resumes.
		h.log.Error("resume session; closing the connection (the client retries)", "client", s.key.id, "instance", s.key.inst, "error", err)
		_ = h.srv.DisconnectClient(cl, packets.ErrServerUnavailable)
		cl.Stop(packets.ErrServerUnavailable)
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
	var will *store.Will // in a cell, the will stays in the record
	h.mu.Lock()
	if sw := h.shadow[k]; sw != nil && sw.cl == cl {
		will = sw.will
	}
	h.mu.Unlock()
	if err := h.st.SaveSession(h.ctx, store.Session{Instance: k.inst, ClientID: k.id, ProtocolVersion: cl.Properties.ProtocolVersion, Will: will}); err != nil {
		h.log.Error("save clean session", "client", k.id, "instance", k.inst, "error", err)
		return nil
	}
	if _, err := h.st.Resume(h.ctx, k.inst, k.id); err != nil {
		h.log.Error("resume clean session", "client", k.id, "instance", k.inst, "error", err)
		return nil
	}
	s := &session{h: h, cl: cl, key: k, wake: make(chan struct{}, 1), stop: make(chan struct{}), will: will,
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

// OnDisconnect retires the connection's session: its store-driven in-flight
// copies leave mochi (they are redelivered from the cursors on reconnect), a
// normal DISCONNECT discards the delayed will, and the session is marked
// disconnected (or deleted when it ends with the connection).
func (h *Hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.dropQueue(cl)
	s := h.sessionOf(cl)
	if s == nil {
		h.endShadowWill(cl, err)
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
	h.forgetShadowWill(cl) // s.will is the record's
	if !current {
		return // taken over
	}
	ctx, k := h.ctx, s.key
	if expire || !persistent(cl) {
		h.endWithConnection(k, s.will, normalEnd(cl, err))
		h.mu.Lock()
		delete(h.sent, k)
		h.mu.Unlock()
		return
	}
	will := s.will
	if normalEnd(cl, err) {
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

// sessionExists reports whether the store has the session, retrying the
// store's failures (not its "no session") for up to Options.StoreRetry: a
// session must never be taken for absent because the store could not be
// read, or it would be replaced by an empty one.
func (h *Hook) sessionExists(k key) (bool, error) {
	deadline := h.opts.Now().Add(h.opts.StoreRetry)
	for {
		_, err := h.st.LoadSession(h.ctx, k.inst, k.id)
		if err == nil || errors.Is(err, store.ErrNoSession) {
			return err == nil, nil
		}
		if h.ctx.Err() != nil || h.opts.Now().After(deadline) {
			return false, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// resume claims and loads k's session, retrying the store's failures for
// up to Options.StoreRetry (a cell electing a leader after a node died).
func (h *Hook) resume(k key) (*store.Session, error) {
	deadline := h.opts.Now().Add(h.opts.StoreRetry)
	for {
		sess, err := h.st.Resume(h.ctx, k.inst, k.id)
		if err == nil || errors.Is(err, store.ErrNoSession) || h.ctx.Err() != nil || h.opts.Now().After(deadline) {
			return sess, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// refuse ends a connection whose session the store could not read or
// write: the client reconnects and finds its session intact, rather than
// being served without one.
func (h *Hook) refuse(cl *mqtt.Client, k key, what string, err error) {
	h.log.Error(what+"; closing the connection (the client retries)", "client", k.id, "instance", k.inst, "error", err)
	cl.Stop(packets.ErrServerUnavailable)
}
