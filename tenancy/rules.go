package tenancy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/nodelink"
)

// Rule is a forwarding rule of an instance (nodelink.Rule), as the API shows
// it. Its signing secret is shown once, at creation; SecretPrefix names it.
type Rule struct {
	nodelink.Rule
	InstanceID   string
	SecretPrefix string
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Rule bounds.
const (
	MaxRules          = 1000 // per instance, whatever the plan
	DefaultRuleMaxAge = 86400
	MaxRuleMaxAge     = 7 * 86400
	maxRuleHeaders    = 20
)

// ruleSecretAAD binds a sealed rule secret to its row.
func ruleSecretAAD(ruleID string) []byte { return []byte("rules:" + ruleID) }

// reservedHeader reports whether a custom webhook header would clash with
// what the sink sets itself.
func reservedHeader(h string) bool {
	h = strings.ToLower(h)
	switch h {
	case "content-type", "content-length", "host", "user-agent", "transfer-encoding", "connection", "te", "upgrade", "trailer":
		return true
	}
	return strings.HasPrefix(h, "ce-") || strings.HasPrefix(h, "x-aerie-")
}

func validHeaderName(h string) bool {
	if h == "" || len(h) > 128 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}

func checkSink(k nodelink.Sink) []FieldError {
	var fields []FieldError
	if k.Type != nodelink.SinkWebhook {
		return append(fields, FieldError{Field: "sink.type", Message: `must be "webhook"`})
	}
	u, err := url.Parse(k.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" || len(k.URL) > 2048 {
		fields = append(fields, FieldError{Field: "sink.url", Message: "must be an https:// URL of at most 2048 bytes"})
	}
	if k.Mode != nodelink.ModeStructured && k.Mode != nodelink.ModeBinary {
		fields = append(fields, FieldError{Field: "sink.mode", Message: `must be "structured" or "binary"`})
	}
	if k.TimeoutMillis < 100 || k.TimeoutMillis > 60000 {
		fields = append(fields, FieldError{Field: "sink.timeout_ms", Message: "must be 100 to 60000"})
	}
	if len(k.Headers) > maxRuleHeaders {
		fields = append(fields, FieldError{Field: "sink.headers", Message: fmt.Sprintf("at most %d headers", maxRuleHeaders)})
	}
	for h, v := range k.Headers {
		if !validHeaderName(h) || reservedHeader(h) || len(v) > 1024 || strings.ContainsAny(v, "\r\n\x00") {
			fields = append(fields, FieldError{Field: "sink.headers", Message: fmt.Sprintf("header %q: a valid name (not Content-Type, Host, ce-* or X-Aerie-*) and a value of at most 1024 bytes on one line", http.CanonicalHeaderKey(h))})
			break
		}
	}
	return fields
}

func checkRule(r nodelink.Rule) error {
	var fields []FieldError
	if !topicName.MatchString(r.Name) {
		fields = append(fields, FieldError{Field: "name", Message: "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"})
	}
	if !ValidTopicFilter(r.Filter) {
		fields = append(fields, FieldError{Field: "filter", Message: "must be a valid MQTT topic filter"})
	}
	if r.MaxAgeSeconds < 1 || r.MaxAgeSeconds > MaxRuleMaxAge {
		fields = append(fields, FieldError{Field: "max_age_seconds", Message: fmt.Sprintf("must be 1 to %d", MaxRuleMaxAge)})
	}
	fields = append(fields, checkSink(r.Sink)...)
	if len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	return nil
}

// DefaultRule fills what a new rule leaves out.
func DefaultRule(r nodelink.Rule) nodelink.Rule {
	if r.MaxAgeSeconds == 0 {
		r.MaxAgeSeconds = DefaultRuleMaxAge
	}
	if r.Sink.Mode == "" {
		r.Sink.Mode = nodelink.ModeStructured
	}
	if r.Sink.TimeoutMillis == 0 {
		r.Sink.TimeoutMillis = 10000
	}
	return r
}

func (s *Service) emitRule(ctx context.Context, tx pgx.Tx, node, instanceID string, r nodelink.Rule) error {
	rc := r
	_, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindRulePut, InstanceID: instanceID, Rule: &rc})
	return err
}

// CreateRule adds a forwarding rule to the instance and pushes it to its
// node. It returns the rule's signing secret, shown this once.
func (s *Service) CreateRule(ctx context.Context, a Actor, orgID, instanceID string, r nodelink.Rule) (Rule, string, error) {
	r = DefaultRule(r)
	r.ID = NewID("ru")
	r.Sink.Signed = true
	secret := "whsec_" + randomToken(32)
	now := s.nowUTC()
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		if err := checkRule(r); err != nil {
			return err
		}
		if err := s.checkOrgLimit(ctx, tx, orgID, limitRules, instanceID, 1); err != nil {
			return err
		}
		sink, err := json.Marshal(r.Sink)
		if err != nil {
			return fmt.Errorf("encode sink: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rules (id, instance_id, name, filter, paused, max_age_seconds, sink_type, sink, secret,
			secret_prefix, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$11)`,
			r.ID, instanceID, r.Name, r.Filter, r.Paused, r.MaxAgeSeconds, r.Sink.Type, sink,
			s.sealSecret([]byte(secret), ruleSecretAAD(r.ID)), secret[:10], now); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%w: a rule named %q exists", ErrConflict, r.Name)
			}
			return fmt.Errorf("insert rule: %w", err)
		}
		if err := s.emitRule(ctx, tx, node, instanceID, r); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "rule.create", r.ID)
	})
	if err != nil {
		return Rule{}, "", err
	}
	return Rule{Rule: r, InstanceID: instanceID, SecretPrefix: secret[:10], CreatedAt: now, UpdatedAt: now}, secret, nil
}

const fwdRuleCols = `r.id, r.name, r.filter, r.paused, r.max_age_seconds, r.sink, r.secret_prefix, r.instance_id, r.created_at, r.updated_at`

func scanFwdRule(row pgx.Row) (Rule, error) {
	var r Rule
	var sink []byte
	if err := row.Scan(&r.ID, &r.Name, &r.Filter, &r.Paused, &r.MaxAgeSeconds, &sink, &r.SecretPrefix, &r.InstanceID, &r.CreatedAt, &r.UpdatedAt); err != nil {
		return Rule{}, err
	}
	if err := json.Unmarshal(sink, &r.Sink); err != nil {
		return Rule{}, fmt.Errorf("rule %s sink: %w", r.ID, err)
	}
	return r, nil
}

// GetRule returns one rule of the org's instance (ErrNotFound for another
// org's instance or rule).
func (s *Service) GetRule(ctx context.Context, orgID, instanceID, id string) (Rule, error) {
	r, err := scanFwdRule(s.db.QueryRow(ctx, `SELECT `+fwdRuleCols+` FROM rules r JOIN instances i ON i.id = r.instance_id
		WHERE i.org_id = $1 AND r.instance_id = $2 AND r.id = $3`, orgID, instanceID, id))
	if err != nil {
		return Rule{}, fmt.Errorf("rule %s: %w", id, notFound(err))
	}
	return r, nil
}

// ListRules lists the instance's rules by ID.
func (s *Service) ListRules(ctx context.Context, orgID, instanceID string, p Page) ([]Rule, string, error) {
	if _, err := s.Instance(ctx, orgID, instanceID); err != nil {
		return nil, "", err
	}
	rows, err := s.db.Query(ctx, `SELECT `+fwdRuleCols+` FROM rules r JOIN instances i ON i.id = r.instance_id
		WHERE i.org_id = $1 AND r.instance_id = $2 AND r.id > $3 ORDER BY r.id LIMIT $4`, orgID, instanceID, p.After, p.limit()+1)
	if err != nil {
		return nil, "", fmt.Errorf("list rules: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Rule, error) { return scanFwdRule(row) })
	if err != nil {
		return nil, "", fmt.Errorf("list rules: %w", err)
	}
	list, next := trimPage(list, p.limit(), func(r Rule) string { return r.ID })
	return list, next, nil
}

// RulePatch changes some of a rule's fields (nil: unchanged).
type RulePatch struct {
	Name          *string
	Filter        *string
	MaxAgeSeconds *int64
	Paused        *bool
	URL           *string
	Mode          *string
	Headers       *map[string]string
	TimeoutMillis *int64
}

// Apply sets the patch's fields on r.
func (p RulePatch) Apply(r *nodelink.Rule) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&r.Name, p.Name)
	set(&r.Filter, p.Filter)
	set(&r.Sink.URL, p.URL)
	set(&r.Sink.Mode, p.Mode)
	if p.MaxAgeSeconds != nil {
		r.MaxAgeSeconds = *p.MaxAgeSeconds
	}
	if p.Paused != nil {
		r.Paused = *p.Paused
	}
	if p.Headers != nil {
		r.Sink.Headers = *p.Headers
	}
	if p.TimeoutMillis != nil {
		r.Sink.TimeoutMillis = *p.TimeoutMillis
	}
}

// UpdateRule changes a rule (pause and resume are changes of Paused) and
// pushes it to the node; action names the audit event.
func (s *Service) UpdateRule(ctx context.Context, a Actor, orgID, instanceID, id string, p RulePatch, action string) (Rule, error) {
	var out Rule
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		cur, err := scanFwdRule(tx.QueryRow(ctx, `SELECT `+fwdRuleCols+` FROM rules r WHERE r.instance_id = $1 AND r.id = $2 FOR UPDATE`, instanceID, id))
		if err != nil {
			return fmt.Errorf("rule %s: %w", id, notFound(err))
		}
		r := cur.Rule
		p.Apply(&r)
		if err := checkRule(r); err != nil {
			return err
		}
		sink, err := json.Marshal(r.Sink)
		if err != nil {
			return fmt.Errorf("encode sink: %w", err)
		}
		now := s.nowUTC()
		if _, err := tx.Exec(ctx, `UPDATE rules SET name=$3, filter=$4, paused=$5, max_age_seconds=$6, sink=$7, updated_at=$8
			WHERE instance_id = $1 AND id = $2`, instanceID, id, r.Name, r.Filter, r.Paused, r.MaxAgeSeconds, sink, now); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("%w: a rule named %q exists", ErrConflict, r.Name)
			}
			return fmt.Errorf("update rule: %w", err)
		}
		if err := s.emitRule(ctx, tx, node, instanceID, r); err != nil {
			return err
		}
		out = Rule{Rule: r, InstanceID: instanceID, SecretPrefix: cur.SecretPrefix, CreatedAt: cur.CreatedAt, UpdatedAt: now}
		return s.audit(ctx, tx, a, orgID, action, id)
	})
	return out, err
}

// DeleteRule removes a rule; the node drops its cursor and dead letters.
func (s *Service) DeleteRule(ctx context.Context, a Actor, orgID, instanceID, id string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM rules WHERE id = $1 AND instance_id = $2`, id, instanceID)
		if err != nil {
			return fmt.Errorf("delete rule: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("rule %s: %w", id, ErrNotFound)
		}
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindRuleDelete, InstanceID: instanceID, ID: id}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "rule.delete", id)
	})
}

// RuleTarget is a rule and the node serving its instance.
type RuleTarget struct {
	Rule   Rule
	NodeID string
}

// ResolveRule finds the org's rule and its instance's node (ErrNotFound
// for another org's instance or rule).
func (s *Service) ResolveRule(ctx context.Context, orgID, instanceID, id string) (RuleTarget, error) {
	r, err := s.GetRule(ctx, orgID, instanceID, id)
	if err != nil {
		return RuleTarget{}, err
	}
	var node string
	if err := s.db.QueryRow(ctx, `SELECT node_id FROM instances WHERE id = $1`, instanceID).Scan(&node); err != nil {
		return RuleTarget{}, fmt.Errorf("instance %s: %w", instanceID, notFound(err))
	}
	return RuleTarget{Rule: r, NodeID: node}, nil
}

// RuleSecretForNode returns a rule's signing secret to a node of the cell
// its instance is placed on (ErrNotFound for any other node).
func (s *Service) RuleSecretForNode(ctx context.Context, nodeID, ruleID string) ([]byte, error) {
	var sealed []byte
	err := s.db.QueryRow(ctx, `SELECT r.secret FROM rules r JOIN instances i ON i.id = r.instance_id
		JOIN nodes n ON n.cell_id = i.cell_id WHERE r.id = $1 AND n.id = $2`, ruleID, nodeID).Scan(&sealed)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", ruleID, notFound(err))
	}
	return s.openSecret(sealed, ruleSecretAAD(ruleID))
}

// sealRuleSecrets (re)seals rule secrets stored plain or under an older
// key-encryption key (SealSecrets).
func (s *Service) sealRuleSecrets(ctx context.Context) (int, error) {
	n := 0
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, secret FROM rules FOR UPDATE`)
		if err != nil {
			return fmt.Errorf("seal rule secrets: %w", err)
		}
		todo := map[string][]byte{}
		for rows.Next() {
			var id string
			var v []byte
			if err := rows.Scan(&id, &v); err != nil {
				rows.Close()
				return fmt.Errorf("seal rule secrets: %w", err)
			}
			if !s.secrets.Current(v) {
				todo[id] = v
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("seal rule secrets: %w", err)
		}
		for id, v := range todo {
			plain, err := s.openSecret(v, ruleSecretAAD(id))
			if err != nil {
				return fmt.Errorf("open the secret of rule %s: %w", id, err)
			}
			if _, err := tx.Exec(ctx, `UPDATE rules SET secret = $2 WHERE id = $1`, id, s.secrets.Seal(plain, ruleSecretAAD(id))); err != nil {
				return fmt.Errorf("seal rule secrets: %w", err)
			}
			n++
		}
		return nil
	})
	return n, err
}

// fillRules loads the rules of the instances matching where (on alias i)
// into list.
func fillRules(ctx context.Context, tx pgx.Tx, where string, arg any, list []nodelink.Instance, byID map[string]int) error {
	rows, err := tx.Query(ctx, `SELECT `+fwdRuleCols+` FROM rules r JOIN instances i ON i.id = r.instance_id WHERE `+where+` ORDER BY r.id`, arg)
	if err != nil {
		return fmt.Errorf("snapshot rules: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanFwdRule(rows)
		if err != nil {
			return fmt.Errorf("snapshot rules: %w", err)
		}
		if k, ok := byID[r.InstanceID]; ok {
			list[k].Rules = append(list[k].Rules, r.Rule)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("snapshot rules: %w", err)
	}
	return nil
}
