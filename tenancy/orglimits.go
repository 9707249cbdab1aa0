package tenancy

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrLimitReached: the org holds as many of something as its plan allows
// (409 limit-reached; the message names the limit).
var ErrLimitReached = errors.New("plan limit reached")

// PlanLimits bound what an org holds on a plan (0 = unlimited); Unverified
// applies instead while no owner of the org has verified an email address.
type PlanLimits struct {
	MaxInstances              int64       `json:"max_instances"`
	MaxCredentialsPerInstance int64       `json:"max_credentials_per_instance"`
	MaxAPIKeys                int64       `json:"max_api_keys"`
	MaxACLRulesPerInstance    int64       `json:"max_acl_rules_per_instance"`
	MaxTopicsPerInstance      int64       `json:"max_topics_per_instance,omitempty"`
	MaxRulesPerInstance       int64       `json:"max_rules_per_instance,omitempty"`
	Unverified                *PlanLimits `json:"unverified,omitempty"`
}

// Things counted against PlanLimits.
const (
	limitInstances   = "instances"
	limitCredentials = "credentials per instance"
	limitAPIKeys     = "API keys"
	limitACLRules    = "ACL rules per instance"
	limitTopics      = "topics per instance"
	limitRules       = "forwarding rules per instance"
)

// checkOrgLimit refuses adding more of kind when the org's plan (or its
// unverified limits) would be exceeded. The caller's transaction must hold
// a lock serializing such additions (the org row for instances and API
// keys, the instance row for credentials and rules).
func (s *Service) checkOrgLimit(ctx context.Context, tx pgx.Tx, orgID, kind, instanceID string, adding int) error {
	grant, err := s.orgPlan(ctx, tx, orgID)
	if err != nil {
		return fmt.Errorf("plan limits: %w", err)
	}
	plan, lim := grant.ID, grant.Limits
	var verified bool
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM org_members m JOIN users u ON u.id = m.user_id
		WHERE m.org_id = $1 AND m.role = 'owner' AND u.email_verified_at IS NOT NULL)`, orgID).Scan(&verified)
	if err != nil {
		return fmt.Errorf("plan limits: %w", err)
	}
	pick := func(l PlanLimits) int64 {
		switch kind {
		case limitInstances:
			return l.MaxInstances
		case limitCredentials:
			return l.MaxCredentialsPerInstance
		case limitAPIKeys:
			return l.MaxAPIKeys
		case limitTopics:
			return l.MaxTopicsPerInstance
		case limitRules:
			return l.MaxRulesPerInstance
		}
		return l.MaxACLRulesPerInstance
	}
	max, why := pick(lim), ""
	if !verified && lim.Unverified != nil {
		if u := pick(*lim.Unverified); u > 0 && (max == 0 || u < max) {
			max, why = u, " until an owner verifies their email address"
		}
	}
	if max == 0 {
		return nil
	}
	var n int64
	switch kind {
	case limitInstances:
		err = tx.QueryRow(ctx, `SELECT count(*) FROM instances WHERE org_id = $1`, orgID).Scan(&n)
	case limitCredentials:
		err = tx.QueryRow(ctx, `SELECT count(*) FROM device_credentials WHERE instance_id = $1`, instanceID).Scan(&n)
	case limitAPIKeys:
		if _, err = tx.Exec(ctx, `SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE`, orgID); err == nil {
			err = tx.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL`, orgID).Scan(&n)
		}
	case limitTopics:
		err = tx.QueryRow(ctx, `SELECT count(*) FROM topics WHERE instance_id = $1`, instanceID).Scan(&n)
	case limitRules:
		err = tx.QueryRow(ctx, `SELECT count(*) FROM rules WHERE instance_id = $1`, instanceID).Scan(&n)
	default:
		err = tx.QueryRow(ctx, `SELECT count(*) FROM acl_rules WHERE instance_id = $1`, instanceID).Scan(&n)
	}
	if err != nil {
		return fmt.Errorf("count %s: %w", kind, err)
	}
	if n+int64(adding) > max {
		return fmt.Errorf("%w: the %s plan allows at most %d %s%s (%d held)", ErrLimitReached, plan, max, kind, why, n)
	}
	return nil
}
