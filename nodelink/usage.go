package nodelink

import (
	"errors"
	"time"
)

// UsageReport carries a node's per-instance deltas for the window
// [From, To). Seq increases by one per report of a node; the control plane
// counts a (node, seq) once, so a node resends a report until it is
// acknowledged without double counting.
type UsageReport struct {
	NodeID    string          `json:"node_id"`
	Seq       int64           `json:"seq"`
	From      time.Time       `json:"from"`
	To        time.Time       `json:"to"`
	Instances []InstanceUsage `json:"instances"`
}

// InstanceUsage is one instance's counters in a UsageReport. Counters are
// deltas over the window; gauges are the value at the window's end.
type InstanceUsage struct {
	InstanceID        string           `json:"instance_id"`
	Connects          int64            `json:"connects"`
	AuthFailures      int64            `json:"auth_failures"`
	MessagesIn        int64            `json:"messages_in"`
	MessagesOut       int64            `json:"messages_out"`
	BytesIn           int64            `json:"bytes_in"`
	BytesOut          int64            `json:"bytes_out"`
	MessageUnitsIn    int64            `json:"message_units_in"`  // one per started 5 KiB of payload
	MessageUnitsOut   int64            `json:"message_units_out"` // one per started 5 KiB of payload
	ConnectionSeconds int64            `json:"connection_seconds"`
	Drops             map[string]int64 `json:"drops,omitempty"` // by reason
	Connections       int64            `json:"connections"`     // gauge
	Subscriptions     int64            `json:"subscriptions"`   // gauge
	Retained          int64            `json:"retained"`        // gauge
	StoredBytes       int64            `json:"stored_bytes"`    // gauge
	// MessagesForwarded counts messages delivered by forwarding rules
	// (also counted in MessagesOut, BytesOut and MessageUnitsOut).
	MessagesForwarded int64 `json:"messages_forwarded,omitempty"`
	// TopicStoredBytes: each provisioned topic's stored bytes (gauge),
	// by topic ID; at most the instance's provisioned topics.
	TopicStoredBytes map[string]int64 `json:"topic_stored_bytes,omitempty"`
}

// ErrUsageRefused: the control plane refused a usage report for good (it
// names an instance the node does not serve); resending will not help.
var ErrUsageRefused = errors.New("usage report refused")

// ErrNodeRejected: the control plane refused the node itself (bad or
// revoked token, unknown node). Retrying will not help until the operator
// acts.
var ErrNodeRejected = errors.New("control plane rejected this node")
