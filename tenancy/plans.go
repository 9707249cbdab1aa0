package tenancy

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Querier is a Postgres pool or transaction. A PlanSource reads through
// the caller's, so a plan lookup inside a tenancy transaction takes no
// second connection and runs in that transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// PlanGrant is what a plan grants: the quotas of each instance (the
// ceilings a user may lower them to) and the limits on what an org holds.
type PlanGrant struct {
	ID     string
	Quotas Quotas
	Limits PlanLimits
}

// PlanSource tells tenancy what plans grant. Billing owns plans and
// subscriptions and implements it (billing.Plans); the process wires it
// in with WithPlans.
type PlanSource interface {
	// OrgGrant is the org's current plan (Free while it has no
	// subscription).
	OrgGrant(ctx context.Context, q Querier, orgID string) (PlanGrant, error)
	// Grant is plan planID.
	Grant(ctx context.Context, q Querier, planID string) (PlanGrant, error)
}

// WithPlans sets where plans are read (required to create instances, set
// their quotas and check plan limits).
func WithPlans(p PlanSource) Option { return func(s *Service) { s.plans = p } }

var errNoPlans = errors.New("tenancy: no plan source configured (WithPlans)")

// orgPlan returns the org's current plan through q.
func (s *Service) orgPlan(ctx context.Context, q Querier, orgID string) (PlanGrant, error) {
	if s.plans == nil {
		return PlanGrant{}, errNoPlans
	}
	g, err := s.plans.OrgGrant(ctx, q, orgID)
	if err != nil {
		return PlanGrant{}, fmt.Errorf("org plan: %w", err)
	}
	return g, nil
}

// plan returns plan id through q.
func (s *Service) plan(ctx context.Context, q Querier, id string) (PlanGrant, error) {
	if s.plans == nil {
		return PlanGrant{}, errNoPlans
	}
	g, err := s.plans.Grant(ctx, q, id)
	if err != nil {
		return PlanGrant{}, fmt.Errorf("plan %s: %w", id, err)
	}
	return g, nil
}
