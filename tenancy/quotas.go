package tenancy

// Quotas are an instance's limits (from its plan, overridable per
// instance); 0 means the data plane's built-in ceiling. The JSON names are
// those of the API and of the instances.quotas and plans.quotas columns.
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
	// MaxBacklogSeconds: a client that stays behind longer is disconnected
	// (0: no limit).
	MaxBacklogSeconds int `json:"max_backlog_seconds"`
	// MaxThrottleSeconds: a client held back by a rate quota longer is
	// disconnected (0: the node's default).
	MaxThrottleSeconds int `json:"max_throttle_seconds"`
}

// Billing limits an instance can be under (Instance.Limited), set by
// SetOrgLimit.
const (
	LimitThrottle = "throttle" // publishing slowed to one message a second
	LimitSuspend  = "suspend"  // devices refused and disconnected
)
