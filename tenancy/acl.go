package tenancy

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/dataplane/config"
)

// ACLRule allows or denies publishing/subscribing on a topic filter, for a
// whole instance or one credential.
type ACLRule = config.ACLRule

// MaxACLRules bounds the rules of one instance.
const MaxACLRules = 500

// ValidACLFilter reports whether f is a topic filter a rule may use: MQTT
// filter syntax ('+' a whole level, '#' the whole last level), no NUL, not
// under $SYS, at most 512 bytes, and ${username}/${clientid} as the only
// placeholders.
func ValidACLFilter(f string) bool {
	if f == "" || len(f) > 512 || strings.ContainsRune(f, 0) || strings.HasPrefix(f, "$") {
		return false
	}
	rest := strings.NewReplacer("${username}", "", "${clientid}", "").Replace(f)
	if strings.Contains(rest, "${") {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

// CreateACLRule adds a rule to the instance; CredentialID, when set, must
// name one of its credentials.
func (s *Service) CreateACLRule(ctx context.Context, a Actor, orgID, instanceID string, r ACLRule) (ACLRule, error) {
	var fields []FieldError
	if r.Effect != config.EffectAllow && r.Effect != config.EffectDeny {
		fields = append(fields, FieldError{Field: "effect", Message: "must be allow or deny"})
	}
	if r.Action != config.ActionPublish && r.Action != config.ActionSubscribe && r.Action != config.ActionAll {
		fields = append(fields, FieldError{Field: "action", Message: "must be publish, subscribe or all"})
	}
	if !ValidACLFilter(r.Filter) {
		fields = append(fields, FieldError{Field: "filter", Message: "must be a valid MQTT topic filter (placeholders ${username}, ${clientid})"})
	}
	if len(fields) > 0 {
		return ACLRule{}, &ValidationError{Fields: fields}
	}
	r.ID = NewID("r")
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		node, err := s.lockInstance(ctx, tx, orgID, instanceID)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM acl_rules WHERE instance_id = $1`, instanceID).Scan(&n); err != nil {
			return fmt.Errorf("count rules: %w", err)
		}
		if err := s.checkOrgLimit(ctx, tx, orgID, limitACLRules, instanceID, 1); err != nil {
			return err
		}
		if n >= MaxACLRules {
			return invalid("filter", fmt.Sprintf("an instance holds at most %d rules", MaxACLRules))
		}
		var cred *string
		if r.CredentialID != "" {
			var ok bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM device_credentials WHERE id = $1 AND instance_id = $2)`,
				r.CredentialID, instanceID).Scan(&ok); err != nil {
				return fmt.Errorf("check credential: %w", err)
			}
			if !ok {
				return invalid("credential_id", "no such credential in this instance")
			}
			cred = &r.CredentialID
		}
		if _, err := tx.Exec(ctx, `INSERT INTO acl_rules (id, instance_id, effect, action, filter, credential_id, created_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7)`, r.ID, instanceID, r.Effect, r.Action, r.Filter, cred, s.nowUTC()); err != nil {
			return fmt.Errorf("insert rule: %w", err)
		}
		rule := r
		if _, err := emit(ctx, tx, node, instanceID, config.Event{Kind: config.KindACLPut, InstanceID: instanceID, ACLRule: &rule}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "acl_rule.create", r.ID)
	})
	if err != nil {
		return ACLRule{}, err
	}
	return r, nil
}

// ListACLRules lists the instance's rules by ID.
func (s *Service) ListACLRules(ctx context.Context, orgID, instanceID string, p Page) ([]ACLRule, string, error) {
	if _, err := s.Instance(ctx, orgID, instanceID); err != nil {
		return nil, "", err
	}
	rows, err := s.db.Query(ctx, `SELECT r.id, r.effect, r.action, r.filter, coalesce(r.credential_id, '') FROM acl_rules r
		JOIN instances i ON i.id = r.instance_id WHERE i.org_id = $1 AND r.instance_id = $2 AND r.id > $3 ORDER BY r.id LIMIT $4`,
		orgID, instanceID, p.After, p.limit()+1)
	if err != nil {
		return nil, "", fmt.Errorf("list rules: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ACLRule, error) {
		var r ACLRule
		err := row.Scan(&r.ID, &r.Effect, &r.Action, &r.Filter, &r.CredentialID)
		return r, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list rules: %w", err)
	}
	list, next := trimPage(list, p.limit(), func(r ACLRule) string { return r.ID })
	return list, next, nil
}

// DeleteACLRule removes a rule.
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
		if _, err := emit(ctx, tx, node, instanceID, config.Event{Kind: config.KindACLDelete, InstanceID: instanceID, ID: id}); err != nil {
			return err
		}
		return s.audit(ctx, tx, a, orgID, "acl_rule.delete", id)
	})
}
