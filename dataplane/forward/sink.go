package forward

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
)

// Event is one message as a sink sends it: the CloudEvents 1.0 context
// attributes and the data.
type Event struct {
	ID          string    // <instance>/<offset>: unique per message, the same on every retry
	Source      string    // the instance, as a URI (SourceOf)
	Type        string    // EventType
	Subject     string    // the MQTT topic (as devices see it)
	Time        time.Time // publish time
	ContentType string    // the MQTT 5 content type, else application/json for JSON payloads, else application/octet-stream
	Data        []byte
	Rule        string // the rule's ID (extension attribute aerierule)
	QoS         byte   // extension attribute mqttqos
}

// EventType is the CloudEvents type of a forwarded message.
const EventType = "io.aerie.message.published"

// SourceOf is the CloudEvents source of an instance's messages.
func SourceOf(instanceID string) string { return "urn:aerie:instance:" + instanceID }

// Sink delivers events of one rule. Deliver returns nil once the receiver
// has the event; an error wrapping ErrPermanent when retrying cannot help
// (the event goes to the dead-letter list at once); any other error is
// retried with backoff. Kafka, NATS and AMQP sinks implement the same
// interface.
type Sink interface {
	Deliver(ctx context.Context, ev Event) error
	Close()
}

// ErrPermanent marks a delivery failure that a retry cannot fix (the
// receiver refused the event: HTTP 4xx other than 408 and 429).
var ErrPermanent = errors.New("permanent delivery failure")

// SinkOptions are the node-wide settings sinks are built with.
type SinkOptions struct {
	Transport TransportOptions
}

// NewSink builds the sink of a rule of an instance; secret is the rule's
// signing secret (opened on the node).
func NewSink(instanceID string, r config.Rule, secret []byte, o SinkOptions) (Sink, error) {
	switch r.Sink.Type {
	case config.SinkWebhook:
		return newWebhook(r, secret, o.Transport)
	}
	return nil, fmt.Errorf("%w: sink type %q is not supported by this node", ErrPermanent, r.Sink.Type)
}
