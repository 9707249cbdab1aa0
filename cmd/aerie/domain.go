package main

import (
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/tenancy"
)

// newDomain builds the control plane's two domain services over pool and
// wires them to each other, each reading the other's tables only through
// the other: tenancy reads plans from billing (tenancy.PlanSource), billing
// reads orgs from tenancy (billing.Orgs) and pushes a plan's quotas through
// it (billing.PlanApplier).
func newDomain(pool *pgxpool.Pool, log *slog.Logger, opts ...tenancy.Option) (*tenancy.Service, *billing.Service) {
	ten := tenancy.NewService(pool, log, append(opts, tenancy.WithPlans(billing.NewPlans(pool)))...)
	return ten, billing.NewService(pool, planApplier{ten}, ten, log)
}
