package tenancy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/nodelink"
)

// TopicPolicy is a provisioned topic: a named topic filter with its own
// policy. Messages matching it stay readable for RetentionSeconds and
// within RetentionBytes (0: the instance's default); publishes matching it
// are refused above MaxQoS, with the retain flag when RetainAllowed is
// false, or over MaxPayloadBytes (0: the instance's quota).
type TopicPolicy struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	Filter           string `json:"filter"`
	RetentionSeconds int64  `json:"retention_seconds,omitempty"`
	RetentionBytes   int64  `json:"retention_bytes,omitempty"`
	MaxQoS           byte   `json:"max_qos"`
	RetainAllowed    bool   `json:"retain_allowed"`
	MaxPayloadBytes  int    `json:"max_payload_bytes,omitempty"`
}

// Topic is a provisioned topic of an instance, as the API shows it.
type Topic struct {
	TopicPolicy
	InstanceID string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// MaxTopics bounds the topics of one instance whatever the plan.
const MaxTopics = 10000

var topicName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)

// ValidTopicFilter reports whether f is a filter a topic may use: MQTT
// filter syntax, no placeholders, not under the broker's reserved "$SYS"
// or "$share", at most 512 bytes (ValidACLFilter without placeholders).
func ValidTopicFilter(f string) bool {
	return ValidACLFilter(f) && !strings.Contains(f, "${")
}

func (s *Service) checkTopic(t TopicPolicy, maxPayload int) error {
	var fields []FieldError
	if !topicName.MatchString(t.Name) {
		fields = append(fields, FieldError{Field: "name", Message: "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"})
	}
	if !ValidTopicFilter(t.Filter) {
		fields = append(fields, FieldError{Field: "filter", Message: "must be a valid MQTT topic filter"})
	}
	if t.RetentionSeconds < 0 || t.RetentionSeconds > 366*86400 {
		fields = append(fields, FieldError{Field: "retention_seconds", Message: "must be 0 (the instance's default) to 31622400"})
	}
	if t.RetentionBytes < 0 {
		fields = append(fields, FieldError{Field: "retention_bytes", Message: "must be 0 (no byte bound) or more"})
	}
	if t.MaxQoS > 2 {
		fields = append(fields, FieldError{Field: "max_qos", Message: "must be 0, 1 or 2"})
	}
	if t.MaxPayloadBytes < 0 || maxPayload > 0 && t.MaxPayloadBytes > maxPayload {
		fields = append(fields, FieldError{Field: "max_payload_bytes", Message: fmt.Sprintf("must be 0 (the instance's quota) to the instance's max_payload_bytes (%d)", maxPayload)})
	}
	if len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	return nil
}

// lockInstancePayload is lockInstance that also returns the instance's
// max_payload_bytes quota.
func (s *Service) lockInstancePayload(ctx context.Context, tx pgx.Tx, orgID, instanceID string) (string, int, error) {
	var node string
	var maxPayload int
	err := tx.QueryRow(ctx, `SELECT node_id, coalesce((quotas->>'max_payload_bytes')::int, 0) FROM instances
		WHERE org_id = $1 AND id = $2 FOR NO KEY UPDATE`, orgID, instanceID).Scan(&node, &maxPayload)
	if err != nil {
		return "", 0, fmt.Errorf("instance %s: %w", instanceID, notFound(err))
	}
	return node, maxPayload, nil
}

// CreateTopic provisions a topic on the instance and pushes it to its node.
func (s *Service) CreateTopic(ctx context.Context, a Actor, orgID, instanceID string, t TopicPolicy) (Topic, error) {
	t.ID = NewID("tp")
	now := s.nowUTC()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, maxPayload, err := s.lockInstancePayload(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		if err := s.checkTopic(t, maxPayload); err != nil {
			return err
		}
		if err := s.checkOrgLimit(ctx, tx, orgID, limitTopics, instanceID, 1); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM topics WHERE instance_id = $1`, instanceID).Scan(&n); err != nil {
			return fmt.Errorf("count topics: %w", err)
		}
		if n >= MaxTopics {
			return invalid("filter", fmt.Sprintf("an instance holds at most %d topics", MaxTopics))
		}
		if _, err := tx.Exec(ctx, `INSERT INTO topics (id, instance_id, name, filter, retention_seconds, retention_bytes, max_qos,
			retain_allowed, max_payload_bytes, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$10)`,
			t.ID, instanceID, t.Name, t.Filter, t.RetentionSeconds, t.RetentionBytes, int(t.MaxQoS), t.RetainAllowed, t.MaxPayloadBytes, now); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%w: a topic named %q exists", ErrConflict, t.Name)
			}
			return fmt.Errorf("insert topic: %w", err)
		}
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindTopicPut, InstanceID: instanceID, Topic: linkTopic(t)}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "topic.create", t.ID)
	})
	if err != nil {
		return Topic{}, err
	}
	return Topic{TopicPolicy: t, InstanceID: instanceID, CreatedAt: now, UpdatedAt: now}, nil
}

const topicCols = `t.id, t.name, t.filter, t.retention_seconds, t.retention_bytes, t.max_qos, t.retain_allowed, t.max_payload_bytes, t.instance_id, t.created_at, t.updated_at`

func scanTopic(row pgx.Row) (Topic, error) {
	var t Topic
	var q int16
	err := row.Scan(&t.ID, &t.Name, &t.Filter, &t.RetentionSeconds, &t.RetentionBytes, &q, &t.RetainAllowed, &t.MaxPayloadBytes, &t.InstanceID, &t.CreatedAt, &t.UpdatedAt)
	t.MaxQoS = byte(q)
	return t, err
}

// GetTopic returns one topic of the org's instance.
func (s *Service) GetTopic(ctx context.Context, orgID, instanceID, id string) (Topic, error) {
	t, err := scanTopic(s.db.QueryRow(ctx, `SELECT `+topicCols+` FROM topics t JOIN instances i ON i.id = t.instance_id
		WHERE i.org_id = $1 AND t.instance_id = $2 AND t.id = $3`, orgID, instanceID, id))
	if err != nil {
		return Topic{}, fmt.Errorf("topic %s: %w", id, notFound(err))
	}
	return t, nil
}

// ListTopics lists the instance's topics by ID.
func (s *Service) ListTopics(ctx context.Context, orgID, instanceID string, p Page) ([]Topic, string, error) {
	if _, err := s.Instance(ctx, orgID, instanceID); err != nil {
		return nil, "", err
	}
	rows, err := s.db.Query(ctx, `SELECT `+topicCols+` FROM topics t JOIN instances i ON i.id = t.instance_id
		WHERE i.org_id = $1 AND t.instance_id = $2 AND t.id > $3 ORDER BY t.id LIMIT $4`, orgID, instanceID, p.After, p.limit()+1)
	if err != nil {
		return nil, "", fmt.Errorf("list topics: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Topic, error) { return scanTopic(row) })
	if err != nil {
		return nil, "", fmt.Errorf("list topics: %w", err)
	}
	list, next := trimPage(list, p.limit(), func(t Topic) string { return t.ID })
	return list, next, nil
}

// TopicPatch changes some of a topic's fields (nil: unchanged).
type TopicPatch struct {
	Name             *string
	Filter           *string
	RetentionSeconds *int64
	RetentionBytes   *int64
	MaxQoS           *byte
	RetainAllowed    *bool
	MaxPayloadBytes  *int
}

// Apply sets the fields of t that p changes.
func (p TopicPatch) Apply(t *TopicPolicy) {
	if p.Name != nil {
		t.Name = *p.Name
	}
	if p.Filter != nil {
		t.Filter = *p.Filter
	}
	if p.RetentionSeconds != nil {
		t.RetentionSeconds = *p.RetentionSeconds
	}
	if p.RetentionBytes != nil {
		t.RetentionBytes = *p.RetentionBytes
	}
	if p.MaxQoS != nil {
		t.MaxQoS = *p.MaxQoS
	}
	if p.RetainAllowed != nil {
		t.RetainAllowed = *p.RetainAllowed
	}
	if p.MaxPayloadBytes != nil {
		t.MaxPayloadBytes = *p.MaxPayloadBytes
	}
}

// UpdateTopic changes a topic and pushes it to the node.
func (s *Service) UpdateTopic(ctx context.Context, a Actor, orgID, instanceID, id string, p TopicPatch) (Topic, error) {
	var out Topic
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, maxPayload, err := s.lockInstancePayload(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		cur, err := scanTopic(tx.QueryRow(ctx, `SELECT `+topicCols+` FROM topics t WHERE t.instance_id = $1 AND t.id = $2 FOR UPDATE`, instanceID, id))
		if err != nil {
			return fmt.Errorf("topic %s: %w", id, notFound(err))
		}
		t := cur.TopicPolicy
		p.Apply(&t)
		if err := s.checkTopic(t, maxPayload); err != nil {
			return err
		}
		now := s.nowUTC()
		if _, err := tx.Exec(ctx, `UPDATE topics SET name=$3, filter=$4, retention_seconds=$5, retention_bytes=$6, max_qos=$7,
			retain_allowed=$8, max_payload_bytes=$9, updated_at=$10 WHERE instance_id = $1 AND id = $2`,
			instanceID, id, t.Name, t.Filter, t.RetentionSeconds, t.RetentionBytes, int(t.MaxQoS), t.RetainAllowed, t.MaxPayloadBytes, now); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%w: a topic named %q exists", ErrConflict, t.Name)
			}
			return fmt.Errorf("update topic: %w", err)
		}
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindTopicPut, InstanceID: instanceID, Topic: linkTopic(t)}); err != nil {
			return err
		}
		out = Topic{TopicPolicy: t, InstanceID: instanceID, CreatedAt: cur.CreatedAt, UpdatedAt: now}
		return s.audit(ctx, tx, a, orgID, "topic.update", id)
	})
	return out, err
}

// DeleteTopic removes a topic; its messages stay in the store under the
// instance's retention.
func (s *Service) DeleteTopic(ctx context.Context, a Actor, orgID, instanceID, id string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM topics WHERE id = $1 AND instance_id = $2`, id, instanceID)
		if err != nil {
			return fmt.Errorf("delete topic: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("topic %s: %w", id, ErrNotFound)
		}
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindTopicDelete, InstanceID: instanceID, ID: id}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "topic.delete", id)
	})
}

// StrictTopics reports whether the instance is in strict topic mode.
func (s *Service) StrictTopics(ctx context.Context, orgID, instanceID string) (bool, error) {
	var on bool
	err := s.db.QueryRow(ctx, `SELECT strict_topics FROM instances WHERE org_id = $1 AND id = $2`, orgID, instanceID).Scan(&on)
	if err != nil {
		return false, fmt.Errorf("instance %s: %w", instanceID, notFound(err))
	}
	return on, nil
}

// SetStrictTopics turns strict topic mode on or off: when on, devices may
// only publish to topics matching one of the instance's topics.
func (s *Service) SetStrictTopics(ctx context.Context, a Actor, orgID, instanceID string, on bool) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE instances SET strict_topics = $3 WHERE org_id = $1 AND id = $2`, orgID, instanceID, on); err != nil {
			return fmt.Errorf("set strict topics: %w", err)
		}
		v := on
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindStrictTopics, InstanceID: instanceID, Strict: &v}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "instance.strict_topics", instanceID)
	})
}

// TopicTarget is what the control plane needs to reach a topic's messages:
// the topic and the node serving its instance.
type TopicTarget struct {
	Topic  Topic
	NodeID string
}

// ResolveTopic finds the org's topic and its instance's node (ErrNotFound
// for another org's instance or topic).
func (s *Service) ResolveTopic(ctx context.Context, orgID, instanceID, id string) (TopicTarget, error) {
	t, err := s.GetTopic(ctx, orgID, instanceID, id)
	if err != nil {
		return TopicTarget{}, err
	}
	var node string
	if err := s.db.QueryRow(ctx, `SELECT node_id FROM instances WHERE id = $1`, instanceID).Scan(&node); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return TopicTarget{}, fmt.Errorf("instance %s: %w", instanceID, ErrNotFound)
		}
		return TopicTarget{}, fmt.Errorf("instance node: %w", err)
	}
	return TopicTarget{Topic: t, NodeID: node}, nil
}

// fillTopics loads the topics and strict mode of the instances matching
// where (on alias i) into list.
func fillTopics(ctx context.Context, tx pgx.Tx, where string, arg any, list []nodelink.Instance, byID map[string]int) error {
	rows, err := tx.Query(ctx, `SELECT `+topicCols+` FROM topics t JOIN instances i ON i.id = t.instance_id WHERE `+where+` ORDER BY t.id`, arg)
	if err != nil {
		return fmt.Errorf("snapshot topics: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		t, err := scanTopic(rows)
		if err != nil {
			return fmt.Errorf("snapshot topics: %w", err)
		}
		if k, ok := byID[t.InstanceID]; ok {
			list[k].Topics = append(list[k].Topics, *linkTopic(t.TopicPolicy))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("snapshot topics: %w", err)
	}
	return nil
}
