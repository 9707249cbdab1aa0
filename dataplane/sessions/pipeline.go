package sessions

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/store"
)

// Publish pipelining.
//
// A QoS≥1 publish must be durable before its PUBACK/PUBREC. Doing the store
// write inside mochi's OnPublish would hold the client's read loop for a
// whole group commit per message, so a publisher with many messages in
// flight would get one message per commit. Instead OnPublish queues the
// message on the client's publish queue and tells mochi to drop the packet
// (ErrRejectPacket: no acknowledgement, no fan-out yet). The queue's worker
// appends everything queued in one store batch and, once it is durable,
// hands each packet back to mochi in arrival order (InjectPacket), which
// now acknowledges it and fans it out. A replayed packet is recognised by
// Replayed and passes the hooks untouched. Options.OnStored is told of each
// stored message once, whether or not its publisher is still there to be
// acknowledged (usage counting: messages in).
//
// Back-pressure: a client with MaxQueuedPublishes messages waiting stops
// being read (OnPublish blocks its read loop) until the store catches up,
// so memory stays bounded when the store falls behind.

// MaxQueuedPublishes bounds one client's publishes waiting for the store.
const MaxQueuedPublishes = 256

type replayKey struct {
	cl *mqtt.Client
	id uint16
}

type queuedPublish struct {
	pk packets.Packet
	m  store.Message
}

// pubQueue is one client's publishes waiting for the store.
type pubQueue struct {
	h       *Hook
	cl      *mqtt.Client
	mu      sync.Mutex
	space   *sync.Cond // signalled when the worker takes the queue
	items   []queuedPublish
	running bool
}

// queueOf returns cl's publish queue.
func (h *Hook) queueOf(cl *mqtt.Client) *pubQueue {
	h.qmu.Lock()
	defer h.qmu.Unlock()
	q := h.queues[cl]
	if q == nil {
		q = &pubQueue{h: h, cl: cl}
		q.space = sync.NewCond(&q.mu)
		h.queues[cl] = q
	}
	return q
}

// dropQueue forgets cl's queue once its connection ended (the worker
// finishes what was queued).
func (h *Hook) dropQueue(cl *mqtt.Client) {
	h.qmu.Lock()
	delete(h.queues, cl)
	h.qmu.Unlock()
}

// Replayed reports whether pk is a publish the hook is handing back to
// mochi after storing it: other hooks must not count or check it again.
func (h *Hook) Replayed(cl *mqtt.Client, pk packets.Packet) bool {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 {
		return false
	}
	_, ok := h.replaying.Load(replayKey{cl, pk.PacketID})
	return ok
}

// enqueue adds a publish, blocking the caller (the client's read loop)
// while the queue is full.
func (q *pubQueue) enqueue(item queuedPublish) {
	q.mu.Lock()
	for len(q.items) >= MaxQueuedPublishes && !q.cl.Closed() {
		q.space.Wait()
	}
	q.items = append(q.items, item)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		q.h.wg.Add(1)
		go q.run()
	}
}

// run stores and replays batches until the queue is empty.
func (q *pubQueue) run() {
	defer q.h.wg.Done()
	for {
		q.mu.Lock()
		batch := q.items
		q.items = nil
		if len(batch) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.space.Broadcast()
		q.mu.Unlock()
		q.flush(batch)
	}
}

// flush makes a batch durable, then hands its packets back to mochi in
// order.
func (q *pubQueue) flush(batch []queuedPublish) {
	h, cl := q.h, q.cl
	ok := make([]bool, len(batch))
	msgs := make([]store.Message, 0, len(batch))
	for i := range batch {
		it := &batch[i]
		ok[i] = true
		if it.m.Retain {
			if err := h.st.Retain(h.ctx, it.m); err != nil {
				if !isRetainedQuota(err) {
					h.log.Error("store retained", "client", cl.ID, "topic", it.pk.TopicName, "error", err)
					ok[i] = false
					continue
				}
				if cl.Properties.ProtocolVersion == 5 {
					q.refuse(it.pk, packets.ErrQuotaExceeded)
					ok[i] = false
					continue
				}
				it.pk.FixedHeader.Retain = false // v3 cannot be told: deliver, do not retain
				it.m.Retain = false
			}
		}
		msgs = append(msgs, it.m)
	}
	var err error
	if len(msgs) > 0 {
		_, err = h.st.Append(h.ctx, msgs)
	}
	if err != nil {
		h.log.Error("store publish", "client", cl.ID, "messages", len(msgs), "error", err)
	}
	if err == nil && h.opts.OnStored != nil {
		for i := range batch {
			if ok[i] {
				h.opts.OnStored(cl, batch[i].pk)
			}
		}
	}
	// The acknowledgements of the batch go out together.
	cl.Cork()
	defer func() { _ = cl.Uncork() }()
	for i := range batch {
		it := batch[i]
		switch {
		case err != nil && ok[i]:
			q.refuse(it.pk, packets.ErrUnspecifiedError)
		case ok[i]:
			q.replay(it.pk)
		}
	}
}

// replay hands a stored publish back to mochi, which acknowledges it and
// fans it out (a closed connection gets neither: the message is stored and
// its publisher will send it again, as QoS 1/2 allow).
func (q *pubQueue) replay(pk packets.Packet) {
	k := replayKey{q.cl, pk.PacketID}
	q.h.replaying.Store(k, struct{}{})
	defer q.h.replaying.Delete(k)
	// The topic alias was resolved when the packet was first read.
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
	if err := q.h.srv.InjectPacket(q.cl, pk); err != nil && !q.cl.Closed() {
		q.h.log.Debug("replay stored publish", "client", q.cl.ID, "error", err)
	}
}

// refuse answers a publish the store did not take: MQTT 5 gets the reason
// code in its PUBACK/PUBREC, MQTT 3.1.1 cannot be told and is disconnected.
func (q *pubQueue) refuse(pk packets.Packet, code packets.Code) {
	if q.cl.Properties.ProtocolVersion != 5 {
		q.cl.Stop(code)
		return
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID, ReasonCode: code.Code}
	if pk.FixedHeader.Qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	_ = q.cl.WritePacket(ack)
}
