package sessions

import (
	"context"

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
	h.mu.Unlock()
	if s == nil {
		unlock()
		return
	}
	h.retire(s)
	unlock()
	h.log.Info("session taken over by another node of the cell", "client", k.id, "instance", k.inst)
	_ = h.srv.DisconnectClient(s.cl, packets.ErrSessionTakenOver)
	s.cl.Stop(packets.ErrSessionTakenOver)
}

// keepsWill reports whether a connecting client's will belongs in its
// session record (and is taken from mochi): delayed wills of persistent
// sessions always; in a cell every will of a persistent session.
func (h *Hook) keepsWill(cl *mqtt.Client, w mqtt.Will) bool {
	return persistent(cl) && (w.WillDelayInterval > 0 || h.cell != nil)
}
