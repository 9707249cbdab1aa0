package nodelink

import "time"

// Event kinds.
const (
	KindSnapshot       = "snapshot"        // Snapshot: replace everything
	KindInstancePut    = "instance.put"    // Instance: replace one instance, children included
	KindInstanceStatus = "instance.status" // Instance: ID, Status, AllowAnonymous, Limited only; children unchanged
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

// Instance statuses as sent to nodes.
const (
	StatusProvisioning = "provisioning"
	StatusRunning      = "running"
	StatusSuspended    = "suspended" // connections refused, live ones closed
	StatusDeleting     = "deleting"  // connections refused, live ones closed
)

// Billing limits an instance can be under (Instance.Limited).
const (
	LimitThrottle = "throttle" // publishing slowed
	LimitSuspend  = "suspend"  // devices refused and disconnected
)

// ACL effects and actions.
const (
	EffectAllow     = "allow"
	EffectDeny      = "deny"
	ActionPublish   = "publish"
	ActionSubscribe = "subscribe"
	ActionAll       = "all"
)

// Event is one line of the config stream.
type Event struct {
	Revision     int64         `json:"rev"`
	Kind         string        `json:"kind"`
	InstanceID   string        `json:"instance_id,omitempty"`
	ID           string        `json:"id,omitempty"` // the deleted credential, rule or topic
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

// Snapshot is everything placed on one node at Revision.
type Snapshot struct {
	Revision  int64      `json:"revision"`
	NodeID    string     `json:"node_id"`
	Instances []Instance `json:"instances"`
}

// Instance is one tenant MQTT instance as a node is told of it.
type Instance struct {
	ID             string `json:"id"`
	OrgID          string `json:"org_id"`
	Status         string `json:"status"`
	AllowAnonymous bool   `json:"allow_anonymous"`
	// Limited is LimitThrottle or LimitSuspend while the org is over its
	// spend limit or its plan's included usage ("" when not limited).
	Limited       string         `json:"limited,omitempty"`
	Quotas        Quotas         `json:"quotas"`
	Credentials   []Credential   `json:"credentials,omitempty"`
	ACL           []ACLRule      `json:"acl,omitempty"`
	TokenKeys     []TokenKey     `json:"token_keys,omitempty"`
	RevokedTokens []RevokedToken `json:"revoked_tokens,omitempty"`
	Topics        []Topic        `json:"topics,omitempty"`
	StrictTopics  bool           `json:"strict_topics,omitempty"`
	// Rules are the instance's forwarding rules (rules.go).
	Rules []Rule `json:"rules,omitempty"`
}

// Credential is a device username and how to check its password: the
// SHA-256 of a generated secret, or PasswordHash, a bcrypt hash of a
// password the tenant supplied. Exactly one of the two is set.
type Credential struct {
	ID              string     `json:"id"`
	Username        string     `json:"username"`
	SecretSHA256    []byte     `json:"secret_sha256,omitempty"` // 32 bytes (base64 in JSON)
	PasswordHash    string     `json:"password_hash,omitempty"`
	ClientIDPattern string     `json:"client_id_pattern,omitempty"`
	Enabled         bool       `json:"enabled"`
	ExpiresAt       *time.Time `json:"expires_at,omitempty"`
}

// ACLRule allows or denies an action on a topic filter, for the whole
// instance or (CredentialID set) one credential.
type ACLRule struct {
	ID           string `json:"id"`
	Effect       string `json:"effect"`
	Action       string `json:"action"`
	Filter       string `json:"filter"`
	CredentialID string `json:"credential_id,omitempty"`
	Position     int    `json:"position,omitempty"`
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
	MaxBacklogSeconds            int   `json:"max_backlog_seconds"`
	MaxThrottleSeconds           int   `json:"max_throttle_seconds"`
}

// TokenKey is a public key that verifies the instance's device tokens.
type TokenKey struct {
	KID       string `json:"kid"`
	Algorithm string `json:"alg"`        // "EdDSA"
	PublicKey []byte `json:"public_key"` // raw Ed25519 public key (base64 in JSON)
}

// RevokedToken names a revoked device token by its "jti".
type RevokedToken struct {
	JTI       string    `json:"jti"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Topic is a provisioned topic: a named filter with its own policy.
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

// Ack is what a node reports after applying changes and every few seconds
// as its heartbeat.
type Ack struct {
	Revision int64 `json:"revision"`
	// Endpoints are the node's public MQTT endpoints ("mqtt", "mqtts",
	// "ws", "wss" → URL).
	Endpoints map[string]string `json:"endpoints,omitempty"`
	// Connections is the node's current connection count (placement).
	Connections int64 `json:"connections"`
	// APIURL is where the node serves requests (Path); empty when it
	// serves none over HTTP.
	APIURL string `json:"api_url,omitempty"`
	// Cell is the cell the node was started as a member of (aerie
	// dataplane --cell): the control plane refuses the ack (409) when it
	// differs from the node's registered cell. Empty: no check.
	Cell string `json:"cell,omitempty"`
}

// DeviceTokenUsername is the username (before "@<instance-id>") a device
// uses to connect with a device token as its password.
const DeviceTokenUsername = "token"

// TokenResource is one entry of a device token's "res" claim.
type TokenResource struct {
	Filter  string   `json:"filter"`
	Actions []string `json:"actions"` // "publish", "subscribe"
}

// DeviceTokenClaims are the claims of a device token: a JWT the control
// plane signs with EdDSA by one of the instance's keys ("kid" header names
// the TokenKey) and nodes verify. Audience is the instance ID; ClientID,
// when set, is the only client ID the token may connect as; Resources are
// the only topics it may use (on top of the instance's ACL rules).
type DeviceTokenClaims struct {
	Issuer    string          `json:"iss"` // "aerie"
	Audience  string          `json:"aud"` // instance ID
	ID        string          `json:"jti"`
	IssuedAt  int64           `json:"iat"`
	ExpiresAt int64           `json:"exp"`
	ClientID  string          `json:"cid,omitempty"`
	Resources []TokenResource `json:"res"`
}
