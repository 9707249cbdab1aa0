package tenancy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// Errors of HTTP publishing; the API maps each to one HTTP problem.
var (
	// ErrPayloadTooLarge: the payload is over the instance's max_payload_bytes.
	ErrPayloadTooLarge = errors.New("payload too large")
	// ErrRateLimited: the instance's publish or byte rate quota is used up.
	ErrRateLimited = errors.New("rate limited")
	// ErrQuotaExceeded: a count quota (retained messages) is reached.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrInstanceUnavailable: the instance is suspended or being deleted.
	ErrInstanceUnavailable = errors.New("instance unavailable")
	// ErrNodeUnavailable: the instance's data-plane node cannot be reached;
	// nothing was published (or read).
	ErrNodeUnavailable = errors.New("data-plane node unavailable")
	// ErrOutcomeUnknown: the node was sent the message but did not answer
	// in time; it may or may not have been published.
	ErrOutcomeUnknown = errors.New("publish outcome unknown")
)

// MaxHTTPPayload bounds an HTTP publish's payload whatever the plan allows.
const MaxHTTPPayload = 256 << 10

// PublishRequest is a message a tenant's server publishes over HTTP.
type PublishRequest struct {
	Topic   string
	Payload []byte
	QoS     int
	Retain  bool
}

// Published is an HTTP publish the node carried out.
type Published struct {
	ID          string
	InstanceID  string
	Topic       string
	QoS         int
	Retain      bool
	Bytes       int
	PublishedAt time.Time
}

// validTopicName reports why topic cannot be published to ("" if it can):
// an MQTT topic name (mqtttopic.CheckTopic) not beginning with "$" (HTTP
// publish never reaches the broker's or the instance's "$" topics); the
// data plane applies the device rules and the instance's level quota on
// top.
func validTopicName(topic string) string {
	err := mqtttopic.CheckTopic(topic)
	switch {
	case errors.Is(err, mqtttopic.ErrEmpty):
		return "is required"
	case errors.Is(err, mqtttopic.ErrTooLong):
		return "must be at most 65,535 bytes"
	case errors.Is(err, mqtttopic.ErrNotUTF8):
		return "must be UTF-8"
	case err != nil: // a wildcard or NUL
		return "must not contain wildcards (+, #) or NUL"
	case strings.HasPrefix(topic, "$"):
		return "must not begin with $ (reserved for the broker)"
	}
	return ""
}

func (r PublishRequest) validate() error {
	var fe []FieldError
	if msg := validTopicName(r.Topic); msg != "" {
		fe = append(fe, FieldError{Field: "topic", Message: msg})
	}
	if r.QoS < 0 || r.QoS > 2 {
		fe = append(fe, FieldError{Field: "qos", Message: "must be 0, 1 or 2"})
	}
	if len(fe) > 0 {
		return &ValidationError{Fields: fe}
	}
	return nil
}

// PublishTarget checks an HTTP publish against the instance (the org's,
// else ErrNotFound): the request is valid, the instance takes messages and
// the payload fits its quota. It returns a new publish ID and the node
// serving the instance, which the caller asks to publish.
func (s *Service) PublishTarget(ctx context.Context, orgID, instanceID string, req PublishRequest) (id, nodeID string, err error) {
	if err := req.validate(); err != nil {
		return "", "", err
	}
	if len(req.Payload) > MaxHTTPPayload {
		return "", "", fmt.Errorf("%w: %d bytes; an HTTP publish carries at most %d", ErrPayloadTooLarge, len(req.Payload), MaxHTTPPayload)
	}
	in, err := s.instance(ctx, s.db, orgID, instanceID, false)
	if err != nil {
		return "", "", err
	}
	if in.Status != InstanceRunning && in.Status != InstanceProvisioning {
		return "", "", fmt.Errorf("%w: instance %s is %s", ErrInstanceUnavailable, in.ID, in.Status)
	}
	if in.Limited == LimitSuspend {
		return "", "", fmt.Errorf("%w: instance %s is suspended: the org is over its spend limit", ErrInstanceUnavailable, in.ID)
	}
	if max := in.Quotas.MaxPayloadBytes; max > 0 && len(req.Payload) > max {
		return "", "", fmt.Errorf("%w: %d bytes is over the instance's max_payload_bytes (%d)", ErrPayloadTooLarge, len(req.Payload), max)
	}
	return NewID("pub"), in.NodeID, nil
}
