package tenancy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/internal/mqtttopic"
	"github.com/aeriemq/aerie/nodelink"
)

// ACLRule allows or denies publishing/subscribing on a topic filter, for a
// whole instance or one credential. Position is its 0-based place in the
// instance's ordered list.
type ACLRule struct {
	ID           string `json:"id"`
	Effect       string `json:"effect"`
	Action       string `json:"action"`
	Filter       string `json:"filter"`
	CredentialID string `json:"credential_id,omitempty"`
	Position     int    `json:"position,omitempty"`
}

// ACL rule effects and actions.
const (
	EffectAllow     = "allow"
	EffectDeny      = "deny"
	ActionPublish   = "publish"
	ActionSubscribe = "subscribe"
	ActionAll       = "all"
)

// MaxACLRules bounds the rules of one instance.
const MaxACLRules = 500

// ValidACLFilter reports whether f is a topic filter a rule may use: an
// MQTT filter (mqtttopic.CheckFilter) of at most 512 bytes, not under the
// broker's reserved "$SYS" or "$share" (mqtttopic.Reserved), and
// ${username}/${clientid} as the only placeholders.
func ValidACLFilter(f string) bool {
	if len(f) > 512 || mqtttopic.CheckFilter(f) != nil {
		return false
	}
	rest := strings.NewReplacer("${username}", "", "${clientid}", "").Replace(f)
	// A filter may start with a placeholder ("${username}/#") or name an
	// instance's own $-topics ("$app/#"), never the broker's reserved ones.
	return !strings.Contains(rest, "${") && !mqtttopic.Reserved(rest)
}

// checkACLRule returns the field errors of r (field names after prefix).
func checkACLRule(prefix string, r ACLRule) []FieldError {
	var fields []FieldError
	if r.Effect != EffectAllow && r.Effect != EffectDeny {
		fields = append(fields, FieldError{Field: prefix + "effect", Message: "must be allow or deny"})
	}
	if r.Action != ActionPublish && r.Action != ActionSubscribe && r.Action != ActionAll {
		fields = append(fields, FieldError{Field: prefix + "action", Message: "must be publish, subscribe or all"})
	}
	if !ValidACLFilter(r.Filter) {
		fields = append(fields, FieldError{Field: prefix + "filter", Message: "must be a valid MQTT topic filter (placeholders ${username}, ${clientid})"})
	}
	return fields
}

// checkRuleCredential checks that id names a credential of the instance.
func checkRuleCredential(ctx context.Context, tx pgx.Tx, instanceID, id, field string) error {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM device_credentials WHERE id = $1 AND instance_id = $2)`,
		id, instanceID).Scan(&ok); err != nil {
		return fmt.Errorf("check credential: %w", err)
	}
	if !ok {
		return invalid(field, "no such credential in this instance")
	}
	return nil
}

// ruleOrder returns the instance's rule IDs in position order.
func ruleOrder(ctx context.Context, tx pgx.Tx, instanceID string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT id FROM acl_rules WHERE instance_id = $1 ORDER BY position, id`, instanceID)
	if err != nil {
		return nil, fmt.Errorf("rule order: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("rule order: %w", err)
	}
	return ids, nil
}

// writeOrder sets the rules' positions to their index in ids.
func writeOrder(ctx context.Context, tx pgx.Tx, instanceID string, ids []string) error {
	if _, err := tx.Exec(ctx, `UPDATE acl_rules r SET position = o.p - 1
		FROM unnest($2::text[]) WITH ORDINALITY AS o(id, p)
		WHERE r.id = o.id AND r.instance_id = $1 AND r.position <> o.p - 1`, instanceID, ids); err != nil {
		return fmt.Errorf("reorder rules: %w", err)
	}
	return nil
}

func insertAt(ids []string, id string, pos int) []string {
	if pos < 0 || pos > len(ids) {
		pos = len(ids)
	}
	out := make([]string, 0, len(ids)+1)
	out = append(out, ids[:pos]...)
	out = append(out, id)
	return append(out, ids[pos:]...)
}

func checkPosition(pos *int) error {
	if pos != nil && (*pos < 0 || *pos >= MaxACLRules) {
		return invalid("position", fmt.Sprintf("must be from 0 to %d", MaxACLRules-1))
	}
	return nil
}

// CreateACLRule adds a rule at the end of the instance's list;
// CredentialID, when set, must name one of its credentials.
func (s *Service) CreateACLRule(ctx context.Context, a Actor, orgID, instanceID string, r ACLRule) (ACLRule, error) {
	return s.CreateACLRuleAt(ctx, a, orgID, instanceID, r, nil)
}

// CreateACLRuleAt adds a rule at position (nil or past the end: last); the
// rules from there on move down one place.
func (s *Service) CreateACLRuleAt(ctx context.Context, a Actor, orgID, instanceID string, r ACLRule, position *int) (ACLRule, error) {
	if fields := checkACLRule("", r); len(fields) > 0 {
		return ACLRule{}, &ValidationError{Fields: fields}
	}
	if err := checkPosition(position); err != nil {
		return ACLRule{}, err
	}
	r.ID = NewID("r")
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		ids, err := ruleOrder(ctx, tx, instanceID)
		if err != nil {
			return err
		}
		if err := s.checkOrgLimit(ctx, tx, orgID, limitACLRules, instanceID, 1); err != nil {
			return err
		}
		if len(ids) >= MaxACLRules {
			return invalid("filter", fmt.Sprintf("an instance holds at most %d rules", MaxACLRules))
		}
		var cred *string
		if r.CredentialID != "" {
			if err := checkRuleCredential(ctx, tx, instanceID, r.CredentialID, "credential_id"); err != nil {
				return err
			}
			cred = &r.CredentialID
		}
		pos := len(ids)
		if position != nil && *position < pos {
			pos = *position
		}
		r.Position = pos
		if _, err := tx.Exec(ctx, `INSERT INTO acl_rules (id, instance_id, effect, action, filter, credential_id, position, created_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`, r.ID, instanceID, r.Effect, r.Action, r.Filter, cred, len(ids), s.nowUTC()); err != nil {
			return fmt.Errorf("insert rule: %w", err)
		}
		if err := writeOrder(ctx, tx, instanceID, insertAt(ids, r.ID, pos)); err != nil {
			return err
		}
		rule := r
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindACLPut, InstanceID: instanceID, ACLRule: linkACLRule(rule)}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "acl_rule.create", r.ID)
	})
	if err != nil {
		return ACLRule{}, err
	}
	return r, nil
}

const ruleCols = `r.id, r.effect, r.action, r.filter, coalesce(r.credential_id, ''), r.position`

func scanRule(row pgx.CollectableRow) (ACLRule, error) {
	var r ACLRule
	err := row.Scan(&r.ID, &r.Effect, &r.Action, &r.Filter, &r.CredentialID, &r.Position)
	return r, err
}

// ListACLRules lists the instance's rules in position order.
func (s *Service) ListACLRules(ctx context.Context, orgID, instanceID string, p Page) ([]ACLRule, string, error) {
	if _, err := s.Instance(ctx, orgID, instanceID); err != nil {
		return nil, "", err
	}
	after := -1
	if p.After != "" {
		n, err := strconv.Atoi(p.After)
		if err != nil {
			return nil, "", invalid("cursor", "is not a cursor this API returned")
		}
		after = n
	}
	rows, err := s.db.Query(ctx, `SELECT `+ruleCols+` FROM acl_rules r
		JOIN instances i ON i.id = r.instance_id WHERE i.org_id = $1 AND r.instance_id = $2 AND r.position > $3 ORDER BY r.position, r.id LIMIT $4`,
		orgID, instanceID, after, p.limit()+1)
	if err != nil {
		return nil, "", fmt.Errorf("list rules: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanRule)
	if err != nil {
		return nil, "", fmt.Errorf("list rules: %w", err)
	}
	list, next := trimPage(list, p.limit(), func(r ACLRule) string { return strconv.Itoa(r.Position) })
	return list, next, nil
}

// ACLRuleByID returns one rule of the org's instance.
func (s *Service) ACLRuleByID(ctx context.Context, orgID, instanceID, id string) (ACLRule, error) {
	return s.aclRule(ctx, s.db, orgID, instanceID, id)
}

func (s *Service) aclRule(ctx context.Context, q querier, orgID, instanceID, id string) (ACLRule, error) {
	rows, err := q.Query(ctx, `SELECT `+ruleCols+` FROM acl_rules r JOIN instances i ON i.id = r.instance_id
		WHERE i.org_id = $1 AND r.instance_id = $2 AND r.id = $3`, orgID, instanceID, id)
	if err != nil {
		return ACLRule{}, fmt.Errorf("get rule: %w", err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, scanRule)
	if err != nil {
		return ACLRule{}, fmt.Errorf("rule %s: %w", id, notFound(err))
	}
	return r, nil
}

// ACLRulePatch changes some fields of a rule; nil leaves one as it is.
// CredentialID "" makes the rule apply to the whole instance.
type ACLRulePatch struct {
	Effect, Action, Filter, CredentialID *string
	Position                             *int
}

// UpdateACLRule changes a rule (moving it when Position is set: the rules
// in between shift by one place).
func (s *Service) UpdateACLRule(ctx context.Context, a Actor, orgID, instanceID, id string, p ACLRulePatch) (ACLRule, error) {
	if err := checkPosition(p.Position); err != nil {
		return ACLRule{}, err
	}
	var out ACLRule
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		cur, err := s.aclRule(ctx, tx, orgID, instanceID, id)
		if err != nil {
			return err
		}
		next := cur
		for _, f := range []struct {
			dst *string
			src *string
		}{{&next.Effect, p.Effect}, {&next.Action, p.Action}, {&next.Filter, p.Filter}, {&next.CredentialID, p.CredentialID}} {
			if f.src != nil {
				*f.dst = *f.src
			}
		}
		if fields := checkACLRule("", next); len(fields) > 0 {
			return &ValidationError{Fields: fields}
		}
		var cred *string
		if next.CredentialID != "" {
			if next.CredentialID != cur.CredentialID {
				if err := checkRuleCredential(ctx, tx, instanceID, next.CredentialID, "credential_id"); err != nil {
					return err
				}
			}
			cred = &next.CredentialID
		}
		if p.Position != nil && *p.Position != cur.Position {
			ids, err := ruleOrder(ctx, tx, instanceID)
			if err != nil {
				return err
			}
			rest := make([]string, 0, len(ids))
			for _, x := range ids {
				if x != id {
					rest = append(rest, x)
				}
			}
			pos := min(*p.Position, len(rest))
			if err := writeOrder(ctx, tx, instanceID, insertAt(rest, id, pos)); err != nil {
				return err
			}
			next.Position = pos
		}
		if next == cur {
			out = cur
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE acl_rules SET effect = $2, action = $3, filter = $4, credential_id = $5 WHERE id = $1`,
			id, next.Effect, next.Action, next.Filter, cred); err != nil {
			return fmt.Errorf("update rule: %w", err)
		}
		rule := next
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindACLPut, InstanceID: instanceID, ACLRule: linkACLRule(rule)}); err != nil {
			return err
		}
		out = next
		return s.audit(ctx, tx, a, orgID, "acl_rule.update", id)
	})
	return out, err
}

// ReplaceACLRules replaces the instance's whole ordered rule list in one
// transaction and one config revision (an acl.replace event). A rule equal
// to an existing one (effect, action, filter, credential) keeps its ID; the
// whole list is validated before anything changes.
func (s *Service) ReplaceACLRules(ctx context.Context, a Actor, orgID, instanceID string, rules []ACLRule) ([]ACLRule, error) {
	if len(rules) > MaxACLRules {
		return nil, invalid("rules", fmt.Sprintf("an instance holds at most %d rules", MaxACLRules))
	}
	var fields []FieldError
	for i, r := range rules {
		fields = append(fields, checkACLRule("rules["+strconv.Itoa(i)+"].", r)...)
	}
	if len(fields) > 0 {
		return nil, &ValidationError{Fields: fields}
	}
	out := make([]ACLRule, len(rules))
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+ruleCols+` FROM acl_rules r WHERE r.instance_id = $1 ORDER BY r.position, r.id`, instanceID)
		if err != nil {
			return fmt.Errorf("list rules: %w", err)
		}
		cur, err := pgx.CollectRows(rows, scanRule)
		if err != nil {
			return fmt.Errorf("list rules: %w", err)
		}
		if grow := len(rules) - len(cur); grow > 0 { // the plan's rule limit holds for a whole-list replace too
			if err := s.checkOrgLimit(ctx, tx, orgID, limitACLRules, instanceID, grow); err != nil {
				return err
			}
		}
		type content struct{ effect, action, filter, cred string }
		free := map[content][]string{}
		for _, r := range cur {
			k := content{r.Effect, r.Action, r.Filter, r.CredentialID}
			free[k] = append(free[k], r.ID)
		}
		checked := map[string]bool{}
		for i, r := range rules {
			if r.CredentialID != "" && !checked[r.CredentialID] {
				if err := checkRuleCredential(ctx, tx, instanceID, r.CredentialID, "rules["+strconv.Itoa(i)+"].credential_id"); err != nil {
					return err
				}
				checked[r.CredentialID] = true
			}
			k := content{r.Effect, r.Action, r.Filter, r.CredentialID}
			r.ID = ""
			if ids := free[k]; len(ids) > 0 {
				r.ID, free[k] = ids[0], ids[1:]
			} else {
				r.ID = NewID("r")
			}
			r.Position = i
			out[i] = r
		}
		if _, err := tx.Exec(ctx, `DELETE FROM acl_rules WHERE instance_id = $1`, instanceID); err != nil {
			return fmt.Errorf("replace rules: %w", err)
		}
		if err := insertRules(ctx, tx, instanceID, out, s.nowUTC()); err != nil {
			return err
		}
		acl := append([]ACLRule{}, out...)
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindACLReplace, InstanceID: instanceID, ACL: linkACL(acl)}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "acl_rule.replace", instanceID+" ("+strconv.Itoa(len(out))+" rules)")
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// insertRules stores rules (IDs and positions set) in one batch.
func insertRules(ctx context.Context, tx pgx.Tx, instanceID string, rules []ACLRule, now time.Time) error {
	batch := &pgx.Batch{}
	for _, r := range rules {
		var cred *string
		if r.CredentialID != "" {
			cred = &r.CredentialID
		}
		batch.Queue(`INSERT INTO acl_rules (id, instance_id, effect, action, filter, credential_id, position, created_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`, r.ID, instanceID, r.Effect, r.Action, r.Filter, cred, r.Position, now)
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("replace rules: %w", err)
	}
	return nil
}

// DeleteACLRule removes a rule; the rules after it move up one place.
func (s *Service) DeleteACLRule(ctx context.Context, a Actor, orgID, instanceID, id string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM acl_rules WHERE id = $1 AND instance_id = $2`, id, instanceID)
		if err != nil {
			return fmt.Errorf("delete rule: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("rule %s: %w", id, ErrNotFound)
		}
		ids, err := ruleOrder(ctx, tx, instanceID)
		if err != nil {
			return err
		}
		if err := writeOrder(ctx, tx, instanceID, ids); err != nil {
			return err
		}
		if _, err := emit(ctx, tx, node, instanceID, nodelink.Event{Kind: nodelink.KindACLDelete, InstanceID: instanceID, ID: id}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "acl_rule.delete", id)
	})
}

// AllACLRules returns the instance's whole rule list in position order.
func (s *Service) AllACLRules(ctx context.Context, orgID, instanceID string) ([]ACLRule, error) {
	if _, err := s.Instance(ctx, orgID, instanceID); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT `+ruleCols+` FROM acl_rules r WHERE r.instance_id = $1 ORDER BY r.position, r.id`, instanceID)
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanRule)
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	return list, nil
}
