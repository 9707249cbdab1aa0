package sessions

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
)

// A node of a cell shares its store with the other nodes (store.Cell), and
// the hook makes it serve any device of the cell:
//
//   - QoS≥1 messages are stored once; the store's queue events include
//     appends made on other nodes, so store-served sessions are woken
//     wherever the message came in (nothing to do here).
//   - QoS 0 messages are not stored: OnPublish relays them to the other
//     nodes (RelayQoS0), which write them to their online sessions that
//     match (pushQoS0), as if published locally.
//   - Retained messages set or cleared on another node update this node's
//     retained index (mochi's), which serves new subscriptions.
//   - A session resumed on another node (ownership moved by
//     compare-and-set in the store) is disconnected here: MQTT 5 gets
//     DISCONNECT 0x8E (session taken over).
//   - Every will of a persistent session is kept in its session record,
//     not only delayed ones: a node that dies takes mochi's in-memory wills
//     with it, while the record's will is fired once by a survivor.
//   - So is the will of a clean session (one that ends with its
//     connection), in a record that expires at disconnection. When the
//     connection ends without a normal DISCONNECT, the record is marked
//     disconnected and the expiry pass (any node's, within its interval)
//     fires the will once and deletes the record; after a normal DISCONNECT
//     the record is deleted. If the node dies first, a survivor marks its
//     records disconnected (store reaping) and fires the wills once.

// relayQoS0 sends a QoS 0 publish made on this node to the cell's others.
func (h *Hook) relayQoS0(m store.Message) {
	if h.cell == nil {
		return
	}
	if err := h.cell.RelayQoS0(h.ctx, m); err != nil && h.ctx.Err() == nil {
		h.log.Debug("relay QoS 0 to the cell", "error", err)
	}
}

// cellLoop applies what the cell's other nodes did.
func (h *Hook) cellLoop() {
	defer h.wg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case ev, ok := <-h.cell.CellEvents():
			if !ok {
				return
			}
			h.applyCellEvent(h.ctx, ev)
		}
	}
}

func (h *Hook) applyCellEvent(_ context.Context, ev store.CellEvent) {
	switch ev.Kind {
	case store.CellPublish:
		pk := publishPacket(&ev.Message)
		pk.FixedHeader.Qos = 0
		pk.FixedHeader.Retain = ev.Message.Retain
		h.pushQoS0(nil, pk)
	case store.CellRetained:
		pk := publishPacket(&ev.Message)
		pk.FixedHeader.Retain = true
		pk.Created = ev.Message.Time.Unix()
		h.srv.Topics.RetainMessage(pk)
	case store.CellTakeover:
		h.takenOver(key{ev.Instance, ev.ClientID})
	}
}

// takenOver disconnects this node's connection of a session another node
// resumed. The session's state now belongs to that node: the retired
// connection neither saves nor disconnects it in the store (its
// OnDisconnect finds it no longer current).
func (h *Hook) takenOver(k key) {
	unlock := h.lifeLock(k)
	h.mu.Lock()
	s := h.online[k]
	if s != nil {
		delete(h.online, k)
	}
	sw := h.shadow[k]
	delete(h.shadow, k)
	h.mu.Unlock()
	var cl *mqtt.Client
	switch {
	case s != nil:
		h.retire(s)
		cl = s.cl
	case sw != nil:
		cl = sw.cl
	default:
		unlock()
		return
	}
	// The new connection's CONNECT is not known here: a will with a delay
	// is taken as resumed in time (not sent [MQTT-3.1.3-9]).
	h.takeoverWill(s, sw, false)
	unlock()
	h.log.Info("session taken over by another node of the cell", "client", k.id, "instance", k.inst)
	_ = h.srv.DisconnectClient(cl, packets.ErrSessionTakenOver)
	cl.Stop(packets.ErrSessionTakenOver)
}

// takeoverWill publishes the will of a connection taken over by a newer
// one, when the store held it (mochi's copy was cleared) [MQTT-3.1.4-3]:
// an immediate will, or any will when its session ends (the old one
// ended with its connection, or the new connection starts clean). A will
// with a delay whose session the new connection resumes is not sent
// [MQTT-3.1.3-9]. The old connection's record was replaced, so this is its
// only chance. A will that cannot be stored now is retried by the expiry
// loop.
func (h *Hook) takeoverWill(old *session, oldShadow *shadowWill, newClean bool) {
	var w *store.Will
	ends := newClean
	switch {
	case old != nil && old.will != nil:
		w = old.will
		ends = ends || !persistent(old.cl)
	case oldShadow != nil:
		w, ends = oldShadow.will, true
	}
	if w == nil || w.Delay > 0 && !ends {
		return
	}
	if err := h.publishWill(h.ctx, w.Message); err != nil {
		h.log.Error("publish the will of a connection taken over; retrying", "error", err)
		h.willMu.Lock()
		h.willsDue = append(h.willsDue, w.Message)
		h.willMu.Unlock()
	}
}

// keepsWill reports whether a connecting client's will belongs in its
// session record (and is taken from mochi): delayed wills of persistent
// sessions always; in a cell every will.
func (h *Hook) keepsWill(cl *mqtt.Client, w mqtt.Will) bool {
	return h.cell != nil || persistent(cl) && w.WillDelayInterval > 0
}

// shadowWill is the will of a clean session in a cell that has no session
// attached yet (it has not subscribed): its record holds the will.
type shadowWill struct {
	cl   *mqtt.Client
	key  key
	will *store.Will
}

// shadowWillOf returns the will of cl to record, nil outside a cell or
// without a will.
func (h *Hook) shadowWillOf(cl *mqtt.Client, k key) *shadowWill {
	w := cl.Properties.Will
	if h.cell == nil || atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 {
		return nil
	}
	return &shadowWill{cl: cl, key: k, will: &store.Will{Message: willMessage(k.inst, w), Delay: time.Duration(w.WillDelayInterval) * time.Second}}
}

// recordCleanWill keeps the will of a clean session in a cell in its
// record (mochi's copy is cleared; the record's fires, see endShadowWill).
// The record is saved and claimed (Resume): a later connection of the
// client on another node takes it over, and this node's writes to the
// record stop. A store that cannot record it closes the connection.
func (h *Hook) recordCleanWill(cl *mqtt.Client, k key) {
	sw := h.shadowWillOf(cl, k)
	if sw == nil {
		return
	}
	err := h.st.SaveSession(h.ctx, store.Session{Instance: k.inst, ClientID: k.id, ProtocolVersion: cl.Properties.ProtocolVersion, Will: sw.will})
	if err == nil {
		_, err = h.st.Resume(h.ctx, k.inst, k.id)
	}
	if err != nil {
		h.refuse(cl, k, "save the will of a clean session", err)
		return
	}
	atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	h.mu.Lock()
	h.shadow[k], h.shadowOf[cl] = sw, sw
	h.mu.Unlock()
}

// endShadowWill ends the record of cl's clean session with a will (one
// that never subscribed) when its connection ends. The key comes from the
// connect: the client's instance may be gone by now.
func (h *Hook) endShadowWill(cl *mqtt.Client, err error) {
	h.mu.Lock()
	sw := h.shadowOf[cl]
	h.mu.Unlock()
	if sw == nil {
		return
	}
	defer h.lifeLock(sw.key)()
	if !h.forgetShadowWill(cl) {
		return // a newer connection of the client owns the record
	}
	h.endWithConnection(sw.key, sw.will, normalEnd(cl, err))
}

// forgetShadowWill forgets cl's recorded will; it reports whether cl's
// connection was still the one whose will is recorded.
func (h *Hook) forgetShadowWill(cl *mqtt.Client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	sw := h.shadowOf[cl]
	if sw == nil {
		return false
	}
	delete(h.shadowOf, cl)
	if h.shadow[sw.key] != sw {
		return false
	}
	delete(h.shadow, sw.key)
	return true
}

// normalEnd reports whether a connection ended with a normal DISCONNECT
// (its will is discarded [MQTT-3.1.2-10]).
func normalEnd(cl *mqtt.Client, err error) bool {
	return err == nil && errors.Is(cl.StopCause(), packets.CodeDisconnect)
}

// endWithConnection ends a session that ends with its connection (the
// caller holds its lifecycle lock). Without a will to fire, its record is
// deleted. With one (kept in the record, in a cell), the record is marked
// disconnected: it is then due, and the expiry pass fires the will once
// (claimed by compare-and-set across the cell) and deletes the record. A
// mark that fails is retried by the expiry loop; if this node stops first,
// a survivor reaps the record and fires the will.
func (h *Hook) endWithConnection(k key, will *store.Will, normal bool) {
	if will == nil || normal {
		if err := h.st.DeleteSession(h.ctx, k.inst, k.id); err != nil {
			h.log.Error("delete session", "client", k.id, "instance", k.inst, "error", err)
		}
		return
	}
	at := h.opts.Now()
	if err := h.st.Disconnect(h.ctx, k.inst, k.id, at); err != nil {
		h.log.Error("mark a session with a will disconnected; retrying", "client", k.id, "instance", k.inst, "error", err)
		h.willMu.Lock()
		h.discDue = append(h.discDue, discDue{k, at})
		h.willMu.Unlock()
	}
}

// discDue is a session whose disconnection could not be recorded yet.
type discDue struct {
	k  key
	at time.Time
}

// retryDisconnects records the disconnections that failed, unless the
// client connected again since (its new connection owns the record).
func (h *Hook) retryDisconnects(ctx context.Context) {
	h.willMu.Lock()
	due := h.discDue
	h.discDue = nil
	h.willMu.Unlock()
	for _, d := range due {
		unlock := h.lifeLock(d.k)
		h.mu.Lock()
		again := h.online[d.k] != nil || h.shadow[d.k] != nil
		h.mu.Unlock()
		var err error
		if !again {
			err = h.st.Disconnect(ctx, d.k.inst, d.k.id, d.at)
		}
		unlock()
		if err != nil && !errors.Is(err, store.ErrNoSession) {
			h.willMu.Lock()
			h.discDue = append(h.discDue, d)
			h.willMu.Unlock()
		}
	}
}
