package store

import "context"

// CellEventKind says what another node of a cell did.
type CellEventKind int

const (
	// CellPublish is a QoS 0 message published on another node (QoS 0 is
	// not stored: it reaches this node's live subscribers only this way).
	CellPublish CellEventKind = iota + 1
	// CellRetained is a retained message set (or cleared: empty payload) on
	// another node; this node updates the retained index it serves.
	CellRetained
	// CellTakeover is a session this node serves that another node resumed
	// (its ownership moved by compare-and-set): this node must disconnect
	// its connection of the session (MQTT 5: 0x8E session taken over).
	CellTakeover
)

// CellEvent is something another node of a cell did that this node must
// reflect in what it serves.
type CellEvent struct {
	Kind CellEventKind
	// Message of CellPublish and CellRetained.
	Message Message
	// Instance and ClientID of CellTakeover.
	Instance, ClientID string
}

// Cell is a Backend shared by the nodes of a cell (the JetStream backend
// in a cluster). The session layer and the gateway use it, when the
// backend implements it, to make any node serve any device of the cell:
//
//   - Queue events (Events/TakeEvents) include appends made on other
//     nodes, so store-served sessions are woken wherever the publish came in.
//   - Resume claims the session for this node by compare-and-set; the node
//     that served it before gets a CellTakeover.
//   - Sessions owned by a node that left the cell (no heartbeat within the
//     cell's liveness window) are marked disconnected by exactly one
//     survivor (compare-and-set), so they expire and their wills fire once;
//     ExpireSessions claims each will by compare-and-set.
type Cell interface {
	Backend
	// NodeName is this node's name in the cell.
	NodeName() string
	// RelayQoS0 sends a QoS 0 message published on this node to the other
	// nodes' live subscribers (best effort, like QoS 0 itself).
	RelayQoS0(ctx context.Context, m Message) error
	// CellEvents delivers what other nodes did. CellRetained and
	// CellTakeover are never dropped; CellPublish may be dropped (counted
	// in CellIO) when the consumer falls behind.
	CellEvents() <-chan CellEvent
	// SetConnections publishes this node's connection count per instance
	// (carried by the node's heartbeat).
	SetConnections(conns map[string]int)
	// PeerConnections is the sum of the other live nodes' last published
	// connection counts of an instance.
	PeerConnections(instance string) int
	// LiveNodes counts the cell's live nodes, this one included.
	LiveNodes() int
}
