// Package config is the data plane's model of what it enforces: the
// instances placed on a node with their credentials, ACL rules, quotas,
// token keys and topics (Snapshot, Instance, …), the changes that update
// them (Event, applied by dataplane/configsync), and the node-local shapes
// the gateway reports (InstanceUsage, ClientInfo, SessionInfo) or takes
// (Publish). The JSON tags are the node's disk cache format
// (configsync.SnapshotFile), not a wire format: the control plane ↔ node
// protocol is nodelink's, converted to these types in dataplane/configsync
// and back in the node's handlers. The device token's claims are part of
// that protocol and are nodelink's types.
package config

import (
	"time"

	"github.com/aeriemq/aerie/nodelink"
)

// Event kinds.
const (
	KindSnapshot       = "snapshot"        // Snapshot: replace everything
	KindInstancePut    = "instance.put"    // Instance: replace one instance, children included
	KindInstanceStatus = "instance.status" // Instance: ID, Status, AllowAnonymous only; children unchanged
	KindInstanceDelete = "instance.delete" // InstanceID
	KindCredentialPut  = "credential.put"  // InstanceID, Credential
	KindCredentialDel  = "credential.delete"
	KindACLPut         = "acl.put" // InstanceID, ACLRule
	KindACLDelete      = "acl.delete"
	KindACLReplace     = "acl.replace"   // InstanceID, ACL: the instance's whole ordered rule list
	KindQuotasPut      = "quotas.put"    // InstanceID, Quotas
	KindTokenKeyPut    = "tokenkey.put"  // InstanceID, TokenKey
	KindTokenRevoke    = "token.revoke"  // InstanceID, RevokedToken
	KindTopicPut       = "topic.put"     // InstanceID, Topic
	KindTopicDelete    = "topic.delete"  // InstanceID, ID
	KindStrictTopics   = "topics.strict" // InstanceID, Strict
	KindHeartbeat      = "heartbeat"     // Revision only
)

// Instance statuses the data plane acts on.
const (
	StatusProvisioning = "provisioning"
	StatusRunning      = "running"
	StatusSuspended    = "suspended" // connections refused, live ones closed
	StatusDeleting     = "deleting"  // connections refused, live ones closed
)

// Event is one change to apply (or a whole Snapshot).
type Event struct {
	Revision     int64         `json:"rev"`
	Kind         string        `json:"kind"`
	InstanceID   string        `json:"instance_id,omitempty"`
	ID           string        `json:"id,omitempty"` // the deleted credential or rule
	Snapshot     *Snapshot     `json:"snapshot,omitempty"`
	Instance     *Instance     `json:"instance,omitempty"`
	Credential   *Credential   `json:"credential,omitempty"`
	ACLRule      *ACLRule      `json:"acl_rule,omitempty"`
	ACL          []ACLRule     `json:"acl,omitempty"`
	Quotas       *Quotas       `json:"quotas,omitempty"`
	TokenKey     *TokenKey     `json:"token_key,omitempty"`
	RevokedToken *RevokedToken `json:"revoked_token,omitempty"`
	Topic        *Topic        `json:"topic,omitempty"`
	Strict       *bool         `json:"strict,omitempty"`
	Rule         *Rule         `json:"rule,omitempty"`
}

// Topic is a provisioned topic: a named topic filter with its own policy.
// Messages matching it stay readable (by consumer groups and offline
// sessions) for RetentionSeconds and within RetentionBytes (0: the
// instance's default); publishes matching it are refused above MaxQoS,
// with the retain flag when RetainAllowed is false, or over
// MaxPayloadBytes (0: the instance's quota).
type Topic struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	Filter           string `json:"filter"`
	RetentionSeconds int64  `json:"retention_seconds,omitempty"`
	RetentionBytes   int64  `json:"retention_bytes,omitempty"`
	MaxQoS           byte   `json:"max_qos"`
	RetainAllowed    bool   `json:"retain_allowed"`
	MaxPayloadBytes  int    `json:"max_payload_bytes,omitempty"`
}

// Publish is a message a tenant's server publishes over HTTP into one of
// the node's instances (the node link's publish request, converted). Device ACLs do not apply (it is the tenant's own API key);
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

// PublishResult is the gateway's answer to a Publish.
type PublishResult struct {
	ID      string `json:"id"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Snapshot is everything placed on one node at Revision.
type Snapshot struct {
	Revision  int64      `json:"revision"`
	NodeID    string     `json:"node_id"`
	Instances []Instance `json:"instances"`
}

// Billing limits an instance can be under (config.Instance.Limited).
const (
	LimitThrottle = "throttle" // publishing slowed to ThrottledQuotas
	LimitSuspend  = "suspend"  // devices refused (CONNACK 0x97) and disconnected
)

// Throttled returns q as enforced on a throttled instance: one publish a
// second per client and per instance, 1 KiB/s.
func Throttled(q Quotas) Quotas {
	q.MaxPublishPerSecond, q.MaxPublishPerSecondPerClient, q.MaxBytesPerSecond = 1, 1, 1024
	return q
}

// Instance is one tenant MQTT instance as the data plane sees it.
type Instance struct {
	ID             string `json:"id"`
	OrgID          string `json:"org_id"`
	Status         string `json:"status"`
	AllowAnonymous bool   `json:"allow_anonymous"`
	// Limited is set while the org is over its spend limit or its plan's
	// included usage: LimitThrottle or LimitSuspend ("" when not limited).
	Limited       string         `json:"limited,omitempty"`
	Quotas        Quotas         `json:"quotas"`
	Credentials   []Credential   `json:"credentials,omitempty"`
	ACL           []ACLRule      `json:"acl,omitempty"`
	TokenKeys     []TokenKey     `json:"token_keys,omitempty"`
	RevokedTokens []RevokedToken `json:"revoked_tokens,omitempty"`
	// Topics are the instance's provisioned topics; with StrictTopics set,
	// devices may only publish to topics matching one of them.
	Topics       []Topic `json:"topics,omitempty"`
	StrictTopics bool    `json:"strict_topics,omitempty"`
	// Rules are the instance's forwarding rules (rules.go).
	Rules []Rule `json:"rules,omitempty"`
}

// Credential is a device username and how to check its password: the
// SHA-256 of a generated (high-entropy) secret, or, for a password the
// tenant supplied, PasswordHash, a salted slow hash whose prefix names the
// scheme (bcrypt: "$2a$"/"$2b$"). Exactly one of the two is set.
type Credential struct {
	ID              string     `json:"id"`
	Username        string     `json:"username"`
	SecretSHA256    []byte     `json:"secret_sha256,omitempty"` // 32 bytes (base64 in JSON)
	PasswordHash    string     `json:"password_hash,omitempty"`
	ClientIDPattern string     `json:"client_id_pattern,omitempty"`
	Enabled         bool       `json:"enabled"`
	ExpiresAt       *time.Time `json:"expires_at,omitempty"`
}

// ACL effects and actions.
const (
	EffectAllow     = "allow"
	EffectDeny      = "deny"
	ActionPublish   = "publish"
	ActionSubscribe = "subscribe"
	ActionAll       = "all"
)

// ACLRule allows or denies an action on a topic filter, for the whole
// instance or (CredentialID set) one credential. The filter may use
// ${username} and ${clientid}. Deny wins; no matching allow means deny.
type ACLRule struct {
	ID           string `json:"id"`
	Effect       string `json:"effect"`
	Action       string `json:"action"`
	Filter       string `json:"filter"`
	CredentialID string `json:"credential_id,omitempty"`
	// Position is the rule's 0-based place in the instance's list (the
	// control plane's order; the node's decisions do not depend on it:
	// deny wins).
	Position int `json:"position,omitempty"`
}

// Quotas are an instance's limits; 0 means the node's built-in ceiling.
type Quotas struct {
	MaxConnections               int   `json:"max_connections"`
	MaxConnectsPerSecond         int   `json:"max_connects_per_second"`
	MaxPublishPerSecond          int   `json:"max_publish_per_second"`
	MaxPublishPerSecondPerClient int   `json:"max_publish_per_second_per_client"`
	MaxBytesPerSecond            int64 `json:"max_bytes_per_second"`
	MaxPayloadBytes              int   `json:"max_payload_bytes"`
	MaxSubscriptionsPerClient    int   `json:"max_subscriptions_per_client"`
	MaxTopicLevels               int   `json:"max_topic_levels"`
	MaxRetainedMessages          int   `json:"max_retained_messages"`
	MaxSessionExpirySeconds      int   `json:"max_session_expiry_seconds"`
	MaxInflight                  int   `json:"max_inflight"`
	// MaxBacklogSeconds: a connected client that stays behind (QoS≥1
	// messages waiting for it or unacknowledged) for longer than this is
	// disconnected (v5 0x97) rather than left to fall further behind; 0
	// means no limit.
	MaxBacklogSeconds int `json:"max_backlog_seconds"`
	// MaxThrottleSeconds: a client publishing beyond a rate quota is read
	// more slowly (back-pressure); one held back continuously for longer
	// than this is disconnected (v5 0x96). 0 means the node's default (30).
	MaxThrottleSeconds int `json:"max_throttle_seconds"`
}

// TokenKey is a public key that verifies device tokens (JWTs, EdDSA) issued
// for the instance; KID matches the token's "kid" header.
type TokenKey struct {
	KID       string `json:"kid"`
	Algorithm string `json:"alg"`        // "EdDSA"
	PublicKey []byte `json:"public_key"` // raw Ed25519 public key (base64 in JSON)
}

// RevokedToken names a revoked device token by its "jti"; it can be
// forgotten after ExpiresAt.
type RevokedToken struct {
	JTI       string    `json:"jti"`
	ExpiresAt time.Time `json:"expires_at"`
}

// DeviceTokenUsername is the username (before "@<instance-id>") a device
// uses to connect with a device token as its password.
const DeviceTokenUsername = nodelink.DeviceTokenUsername

// TokenResource is one entry of a device token's "res" claim (the token
// format is the node link's).
type TokenResource = nodelink.TokenResource

// DeviceTokenClaims are the claims of a device token, as the control plane
// issues them (nodelink.DeviceTokenClaims).
type DeviceTokenClaims = nodelink.DeviceTokenClaims

// InstanceUsage is one instance's usage counted on the node (reported to
// the control plane by dataplane/usagereport). Counters are
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
	Drops             map[string]int64 `json:"drops,omitempty"` // by reason: acl, quota, queue_full, too_large, expired
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

// ClientInfo is one connected client as its node sees it (the console's
// and API's live clients list).
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

// SessionInfo is one persistent session as its node sees it (the console's
// and API's sessions list).
type SessionInfo struct {
	ClientID       string     `json:"client_id"`
	Online         bool       `json:"online"`
	DisconnectedAt *time.Time `json:"disconnected_at"`
	// ExpirySeconds is the session expiry interval (-1: never expires).
	ExpirySeconds int64    `json:"expiry_seconds"`
	Subscriptions []string `json:"subscriptions"`
	// Backlog is the stored messages waiting for it (at most
	// SessionBacklogCap per subscription; BacklogCapped says so).
	Backlog       int        `json:"backlog"`
	BacklogCapped bool       `json:"backlog_capped"`
	OldestAt      *time.Time `json:"oldest_at"`
}

// SessionBacklogCap bounds the backlog counted per subscription.
const SessionBacklogCap = 10000
