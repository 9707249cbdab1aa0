package config

// Rule event kinds.
const (
	KindRulePut    = "rule.put"    // InstanceID, Rule
	KindRuleDelete = "rule.delete" // InstanceID, ID
)

// Sink types.
const (
	SinkWebhook = "webhook"
)

// Webhook modes (CloudEvents 1.0 HTTP binding).
const (
	ModeStructured = "structured" // the whole event as application/cloudevents+json
	ModeBinary     = "binary"     // ce-* headers, the payload as the body
)

// Rule is a forwarding rule: the instance's messages matching Filter go to
// Sink, at least once and in order per topic, driven from the node's store
// (the rule's queue and a cursor, like a consumer group). A message whose
// delivery still fails once it is older than MaxAgeSeconds goes to the
// rule's dead-letter list on the node.
type Rule struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Filter        string `json:"filter"`
	Paused        bool   `json:"paused,omitempty"`
	MaxAgeSeconds int64  `json:"max_age_seconds"`
	Sink          Sink   `json:"sink"`
}

// Sink is where a rule sends messages. Type names the implementation
// (webhook; Kafka, NATS and AMQP may follow); the other fields are the
// webhook's.
type Sink struct {
	Type          string            `json:"type"`
	URL           string            `json:"url,omitempty"`
	Mode          string            `json:"mode,omitempty"` // ModeStructured (default) or ModeBinary
	Headers       map[string]string `json:"headers,omitempty"`
	TimeoutMillis int64             `json:"timeout_ms,omitempty"`
	// Signed says the rule has a signing secret. Secrets never travel in
	// the config: the node fetches a rule's secret from the control plane
	// (GET /internal/v1/nodes/{node_id}/rules/{rule_id}/secret, node token)
	// and keeps it in memory only.
	Signed bool `json:"signed,omitempty"`
}
