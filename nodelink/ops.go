package nodelink

import "time"

// Operations a node serves to the control plane (Request.Op).
const (
	OpClientsList      = "clients.list"       // → []ClientInfo
	OpClientDisconnect = "clients.disconnect" // ClientRef → Done
	OpUsagePending     = "usage.pending"      // → InstanceUsage not yet reported
	OpSessionsList     = "sessions.list"      // → []SessionInfo
	OpSessionDiscard   = "sessions.discard"   // ClientRef → Done (409 while online)
	OpPoll             = "topics.poll"        // PollRequest → PollResult
	OpAck              = "topics.ack"         // AckRequest → AckResult
	OpStats            = "topics.stats"       // → []TopicStat
	OpPublish          = "publish"            // Publish → PublishResult
)

// ClientRef names one client of an instance.
type ClientRef struct {
	ClientID string `json:"client_id"`
}

// Done answers a disconnect or discard: false when there was nothing to do.
type Done struct {
	Done bool `json:"done"`
}

// ClientInfo is one connected client as its node sees it.
type ClientInfo struct {
	ClientID        string    `json:"client_id"`
	Username        string    `json:"username"`
	ProtocolVersion int       `json:"protocol_version"`
	Transport       string    `json:"transport"` // mqtt, mqtts, ws, wss
	RemoteAddr      string    `json:"remote_addr"`
	ConnectedAt     time.Time `json:"connected_at"`
	Keepalive       int       `json:"keepalive"` // seconds
	Subscriptions   []string  `json:"subscriptions"`
	Inflight        int       `json:"inflight"`
	MessagesIn      int64     `json:"messages_in"`
	MessagesOut     int64     `json:"messages_out"`
}

// SessionInfo is one persistent session as its node sees it.
type SessionInfo struct {
	ClientID       string     `json:"client_id"`
	Online         bool       `json:"online"`
	DisconnectedAt *time.Time `json:"disconnected_at"`
	// ExpirySeconds is the session expiry interval (-1: never expires).
	ExpirySeconds int64    `json:"expiry_seconds"`
	Subscriptions []string `json:"subscriptions"`
	// Backlog is the stored messages waiting for it, counted up to a cap
	// per subscription (BacklogCapped says so).
	Backlog       int        `json:"backlog"`
	BacklogCapped bool       `json:"backlog_capped"`
	OldestAt      *time.Time `json:"oldest_at"`
}

// Consumer-group bounds.
const (
	MaxPollLimit = 1000
	MaxPollWait  = 30 * time.Second
	DefaultLease = 30 * time.Second
	MaxLease     = time.Hour
)

// PollRequest asks for up to Limit messages of a topic as Group.
type PollRequest struct {
	TopicID     string   `json:"topic_id"`
	Group       string   `json:"group"`
	Limit       int      `json:"limit"`
	WaitMillis  int64    `json:"wait_ms"`
	LeaseMillis int64    `json:"lease_ms"`
	Start       string   `json:"start"` // "earliest" (default) or "latest", for a new group
	AckOffsets  []uint64 `json:"ack,omitempty"`
}

// Message is one stored message as an application reads it.
type Message struct {
	Offset      uint64      `json:"offset"`
	Topic       string      `json:"topic"`
	Payload     []byte      `json:"payload"`
	QoS         byte        `json:"qos"`
	Retain      bool        `json:"retain"`
	PublishedAt time.Time   `json:"published_at"`
	Properties  *Properties `json:"properties,omitempty"`
	Redelivered bool        `json:"redelivered,omitempty"`
}

// Properties are the MQTT 5 properties a message was published with.
type Properties struct {
	PayloadFormat   *byte          `json:"payload_format,omitempty"`
	MessageExpiry   uint32         `json:"message_expiry,omitempty"`
	ContentType     string         `json:"content_type,omitempty"`
	ResponseTopic   string         `json:"response_topic,omitempty"`
	CorrelationData []byte         `json:"correlation_data,omitempty"`
	User            []UserProperty `json:"user_properties,omitempty"`
}

// UserProperty is one MQTT 5 user property (JSON "Key", "Value").
type UserProperty struct{ Key, Value string }

// PollResult is a batch.
type PollResult struct {
	Messages  []Message `json:"messages"`
	Committed uint64    `json:"committed"`
}

// AckRequest acknowledges offsets handed to Group.
type AckRequest struct {
	TopicID string   `json:"topic_id"`
	Group   string   `json:"group"`
	Offsets []uint64 `json:"offsets"`
}

// AckResult is the group's committed offset after the ack.
type AckResult struct {
	Committed uint64 `json:"committed"`
	Pending   int    `json:"pending"`
}

// TopicStat is a topic's storage on the node.
type TopicStat struct {
	TopicID     string `json:"topic_id"`
	Filter      string `json:"filter"`
	StoredBytes int64  `json:"stored_bytes"`
}

// Publish is a message a tenant's server publishes over HTTP into one of
// its instances. Device ACLs do not apply (it is the tenant's own API key);
// the instance's quotas and usage counting do.
type Publish struct {
	ID         string `json:"id"`
	InstanceID string `json:"instance_id"`
	Topic      string `json:"topic"` // as devices see it (no instance mount)
	Payload    []byte `json:"payload"`
	QoS        byte   `json:"qos"`
	Retain     bool   `json:"retain,omitempty"`
}

// Outcomes of a Publish (PublishResult.Code).
const (
	PublishOK           = ""
	PublishInvalidTopic = "invalid_topic"  // not a valid topic name for the instance
	PublishTooLarge     = "too_large"      // payload over the instance's max_payload_bytes
	PublishRateLimited  = "rate_limited"   // the instance's publish or byte rate quota
	PublishRetainedFull = "retained_quota" // max_retained_messages reached
	PublishUnavailable  = "unavailable"    // instance not on this node, suspended or deleting
	PublishFailed       = "failed"         // the node could not publish (store error)
)

// PublishResult is the node's answer to a Publish.
type PublishResult struct {
	ID      string `json:"id"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// OpGroups lists a topic's consumer groups with their lag.
const OpGroups = "topics.groups"

// LagCap bounds the messages counted for a group's lag (LagCapped says so).
const LagCap = 10000

// GroupsRequest asks for a topic's consumer groups.
type GroupsRequest struct {
	TopicID string `json:"topic_id"`
}

// GroupStat is a consumer group of a topic as the node sees it.
type GroupStat struct {
	Group     string `json:"group"`
	Committed uint64 `json:"committed"`
	// Lag counts the topic's stored messages after the committed offset
	// (handed out and not yet acknowledged ones included), at most LagCap.
	Lag       int  `json:"lag"`
	LagCapped bool `json:"lag_capped"`
	// Pending counts the messages handed out and not acknowledged yet
	// (since the node started).
	Pending int `json:"pending"`
	// OldestUnread is when the first message after the committed offset
	// was stored (nil when the group is caught up).
	OldestUnread *time.Time `json:"oldest_unread_at,omitempty"`
}
