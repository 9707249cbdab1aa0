package nodelink

import (
	"context"
	"time"
)

// Rule event kinds (config flow).
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

// Forwarding-rule operations a node serves (Request.Op).
const (
	OpRuleStatus  = "rules.status"
	OpDeadLetters = "rules.deadletters"
	OpRuleReplay  = "rules.replay"
	OpRulePurge   = "rules.purge"
)

// Rule states.
const (
	RuleStateActive  = "active"  // delivering, or waiting for messages
	RuleStateFailing = "failing" // the last attempt failed; retrying
	RuleStatePaused  = "paused"
	RuleStateError   = "error"   // cannot run (sink cannot be built); see LastError
	RuleStatePending = "pending" // not (yet) on this node
)

// RuleStatus is a rule's delivery state and counters on the node.
type RuleStatus struct {
	RuleID          string     `json:"rule_id"`
	State           string     `json:"state"`
	Delivered       int64      `json:"delivered"`
	Failed          int64      `json:"failed"`
	Retries         int64      `json:"retries"`
	DeadLettered    int64      `json:"dead_lettered"`
	DeadLetters     int64      `json:"dead_letters"`
	LagMessages     int        `json:"lag_messages"`
	LagCapped       bool       `json:"lag_capped,omitempty"`
	LagSeconds      float64    `json:"lag_seconds"`
	LastError       string     `json:"last_error,omitempty"`
	LastErrorAt     *time.Time `json:"last_error_at,omitempty"`
	LastDeliveredAt *time.Time `json:"last_delivered_at,omitempty"`
}

// RuleRequest names a rule of the instance.
type RuleRequest struct {
	RuleID string `json:"rule_id"`
	After  uint64 `json:"after,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// DeadLetter is one dead letter as the API shows it.
type DeadLetter struct {
	Offset      uint64    `json:"offset"`
	Topic       string    `json:"topic"`
	Payload     []byte    `json:"payload"`
	QoS         byte      `json:"qos"`
	PublishedAt time.Time `json:"published_at"`
	Reason      string    `json:"reason"`
	Attempts    int       `json:"attempts"`
	DeadAt      time.Time `json:"dead_at"`
}

// DeadLetterPage is a page of a rule's dead letters.
type DeadLetterPage struct {
	Items []DeadLetter `json:"items"`
	Next  uint64       `json:"next,omitempty"` // pass as After for the next page; 0 at the end
}

// CountResult answers replay (dead letters queued for a retry) and purge
// (dead letters removed).
type CountResult struct {
	Count int64 `json:"count"`
}

// RuleStatus returns a rule's status on its node (RuleStatePending when the node
// does not run it yet).
func (n Nodes) RuleStatus(ctx context.Context, nodeID, instanceID, ruleID string) (RuleStatus, error) {
	var all []RuleStatus
	if err := n.call(ctx, nodeID, instanceID, OpRuleStatus, RuleRequest{RuleID: ruleID}, &all); err != nil {
		return RuleStatus{}, err
	}
	for _, s := range all {
		if s.RuleID == ruleID {
			return s, nil
		}
	}
	return RuleStatus{RuleID: ruleID, State: RuleStatePending}, nil
}

// RuleStatuses returns the status of each rule of the instance its node runs.
func (n Nodes) RuleStatuses(ctx context.Context, nodeID, instanceID string) (map[string]RuleStatus, error) {
	var all []RuleStatus
	if err := n.call(ctx, nodeID, instanceID, OpRuleStatus, RuleRequest{RuleID: "*"}, &all); err != nil {
		return nil, err
	}
	out := make(map[string]RuleStatus, len(all))
	for _, s := range all {
		out[s.RuleID] = s
	}
	return out, nil
}

// DeadLetters returns a page of a rule's dead letters after offset after.
func (n Nodes) DeadLetters(ctx context.Context, nodeID, instanceID, ruleID string, after uint64, limit int) (DeadLetterPage, error) {
	var out DeadLetterPage
	err := n.call(ctx, nodeID, instanceID, OpDeadLetters, RuleRequest{RuleID: ruleID, After: after, Limit: limit}, &out)
	if out.Items == nil {
		out.Items = []DeadLetter{}
	}
	return out, err
}

// ReplayDeadLetters asks the node to try a rule's dead letters again.
func (n Nodes) ReplayDeadLetters(ctx context.Context, nodeID, instanceID, ruleID string) (CountResult, error) {
	var out CountResult
	return out, n.call(ctx, nodeID, instanceID, OpRuleReplay, RuleRequest{RuleID: ruleID}, &out)
}

// PurgeDeadLetters empties a rule's dead-letter list.
func (n Nodes) PurgeDeadLetters(ctx context.Context, nodeID, instanceID, ruleID string) (CountResult, error) {
	var out CountResult
	return out, n.call(ctx, nodeID, instanceID, OpRulePurge, RuleRequest{RuleID: ruleID}, &out)
}
