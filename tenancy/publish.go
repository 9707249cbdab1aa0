package tenancy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/dataplane/config"
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
	// ErrNodeUnavailable: the instance's data-plane node did not take the
	// message in time; nothing was published.
	ErrNodeUnavailable = errors.New("data-plane node unavailable")
	// ErrOutcomeUnknown: the node took the message but did not answer in
	// time; it may or may not have been published.
	ErrOutcomeUnknown = errors.New("publish outcome unknown")
)

// PublishChannel is the Postgres NOTIFY channel announcing that a node
// answered an HTTP publish; the payload is the publish ID.
const PublishChannel = "aerie_publish_done"

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

// EnqueuePublish checks an HTTP publish against the instance (the org's,
// else ErrNotFound) and queues it for the instance's node. The node is woken
// through the config channel when the transaction commits.
func (s *Service) EnqueuePublish(ctx context.Context, orgID, instanceID string, req PublishRequest) (string, error) {
	if err := req.validate(); err != nil {
		return "", err
	}
	if len(req.Payload) > MaxHTTPPayload {
		return "", fmt.Errorf("%w: %d bytes; an HTTP publish carries at most %d", ErrPayloadTooLarge, len(req.Payload), MaxHTTPPayload)
	}
	id := NewID("pub")
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		in, err := s.instance(ctx, tx, orgID, instanceID, false)
		if err != nil {
			return err
		}
		if in.Status != InstanceRunning && in.Status != InstanceProvisioning {
			return fmt.Errorf("%w: instance %s is %s", ErrInstanceUnavailable, in.ID, in.Status)
		}
		if in.Limited == config.LimitSuspend {
			return fmt.Errorf("%w: instance %s is suspended: the org is over its spend limit", ErrInstanceUnavailable, in.ID)
		}
		if max := in.Quotas.MaxPayloadBytes; max > 0 && len(req.Payload) > max {
			return fmt.Errorf("%w: %d bytes is over the instance's max_payload_bytes (%d)", ErrPayloadTooLarge, len(req.Payload), max)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM http_publishes WHERE created_at < $1`, s.now().Add(-time.Hour)); err != nil {
			return fmt.Errorf("prune publishes: %w", err)
		}
		payload := req.Payload
		if payload == nil {
			payload = []byte{}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO http_publishes (id, org_id, instance_id, node_id, topic, payload, qos, retain, created_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`, id, orgID, in.ID, in.NodeID, req.Topic, payload, req.QoS, req.Retain, s.now()); err != nil {
			return fmt.Errorf("queue publish: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, ConfigChannel, in.NodeID+":0"); err != nil {
			return fmt.Errorf("notify node: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// ClaimPublishes takes up to limit queued publishes of the node, oldest
// first, marking them sent and clearing their payload from the table. Two
// control-plane processes never claim the same one.
func (s *Service) ClaimPublishes(ctx context.Context, nodeID string, limit int) ([]config.Publish, error) {
	rows, err := s.db.Query(ctx, `WITH c AS (
			SELECT id, payload FROM http_publishes WHERE node_id = $1 AND state = 'pending'
			ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
		UPDATE http_publishes p SET state = 'sent', sent_at = $3, payload = NULL FROM c WHERE p.id = c.id
		RETURNING p.id, p.instance_id, p.topic, c.payload, p.qos, p.retain, p.created_at`, nodeID, limit, s.now())
	if err != nil {
		return nil, fmt.Errorf("claim publishes: %w", err)
	}
	type claimed struct {
		p  config.Publish
		at time.Time
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
		var c claimed
		var qos int16
		err := r.Scan(&c.p.ID, &c.p.InstanceID, &c.p.Topic, &c.p.Payload, &qos, &c.p.Retain, &c.at)
		c.p.QoS = byte(qos)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim publishes: %w", err)
	}
	// RETURNING does not keep the CTE's order.
	sort.Slice(list, func(i, j int) bool {
		if !list[i].at.Equal(list[j].at) {
			return list[i].at.Before(list[j].at)
		}
		return list[i].p.ID < list[j].p.ID
	})
	out := make([]config.Publish, len(list))
	for i, c := range list {
		out[i] = c.p
	}
	return out, nil
}

// CompletePublish records the node's answer to a publish it was sent and
// wakes the request waiting for it. A repeated answer is ignored.
func (s *Service) CompletePublish(ctx context.Context, nodeID string, res config.PublishResult) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE http_publishes SET state = 'done', result_code = $3, result_message = $4, done_at = $5
			WHERE id = $1 AND node_id = $2 AND state = 'sent'`, res.ID, nodeID, res.Code, truncate(res.Message, 500), s.now())
		if err != nil {
			return fmt.Errorf("complete publish: %w", err)
		}
		if tag.RowsAffected() == 0 {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM http_publishes WHERE id = $1 AND node_id = $2)`, res.ID, nodeID).Scan(&exists); err != nil {
				return fmt.Errorf("complete publish: %w", err)
			}
			if !exists {
				return fmt.Errorf("publish %s: %w", res.ID, ErrNotFound)
			}
			return nil
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, PublishChannel, res.ID); err != nil {
			return fmt.Errorf("notify publish: %w", err)
		}
		return nil
	})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// publishState is where a queued publish is.
type publishState struct {
	state, code, message string
	qos                  int16
	retain               bool
	topic, instanceID    string
	doneAt               *time.Time
}

func (s *Service) publishState(ctx context.Context, id string) (publishState, error) {
	var st publishState
	err := s.db.QueryRow(ctx, `SELECT state, result_code, result_message, qos, retain, topic, instance_id, done_at
		FROM http_publishes WHERE id = $1`, id).Scan(&st.state, &st.code, &st.message, &st.qos, &st.retain, &st.topic, &st.instanceID, &st.doneAt)
	if err != nil {
		return st, fmt.Errorf("publish %s: %w", id, notFound(err))
	}
	return st, nil
}

// expirePublish withdraws a publish no node has claimed; false means a node
// claimed it meanwhile.
func (s *Service) expirePublish(ctx context.Context, id string) (bool, error) {
	tag, err := s.db.Exec(ctx, `UPDATE http_publishes SET state = 'expired', payload = NULL, done_at = $2
		WHERE id = $1 AND state = 'pending'`, id, s.now())
	if err != nil {
		return false, fmt.Errorf("expire publish: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// publishError maps a node's answer to the service's errors.
func publishError(code, message string) error {
	switch code {
	case config.PublishOK:
		return nil
	case config.PublishInvalidTopic:
		return &ValidationError{Fields: []FieldError{{Field: "topic", Message: message}}}
	case config.PublishTooLarge:
		return fmt.Errorf("%w: %s", ErrPayloadTooLarge, message)
	case config.PublishRateLimited:
		return fmt.Errorf("%w: %s", ErrRateLimited, message)
	case config.PublishRetainedFull:
		return fmt.Errorf("%w: %s", ErrQuotaExceeded, message)
	case config.PublishUnavailable:
		return fmt.Errorf("%w: %s", ErrInstanceUnavailable, message)
	default:
		return fmt.Errorf("publish failed on the node (%s): %s", code, message)
	}
}
