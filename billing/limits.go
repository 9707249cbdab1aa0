package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OrgLimiter applies a billing limit to an org's instances ("throttle",
// "suspend") or lifts it (""). The tenancy service implements it; the
// change reaches the data plane through the config revision.
type OrgLimiter interface {
	SetOrgLimit(ctx context.Context, orgID, limit, reason string) (int, error)
}

// overLimit reports whether the org's current period breaks its spend
// limit, or uses up an included allowance its plan has no overage price
// for (so it is capped, as on Free), and says why.
func overLimit(sub Subscription, plan Plan, d Draft) (bool, string) {
	if sub.SpendLimitCents != nil && d.TotalCents >= *sub.SpendLimitCents {
		return true, fmt.Sprintf("This month's charges (%s %.2f) reached your spend limit of %s %.2f.",
			d.Currency, float64(d.TotalCents)/100, d.Currency, float64(*sub.SpendLimitCents)/100)
	}
	u := d.Usage
	for _, m := range []struct {
		name, label    string
		used, included int64
	}{
		{MetricMessages, "messages", u.MessageUnits, plan.Included.MessageUnits},
		{MetricConnectionMinutes, "connection minutes", (u.ConnectionSeconds + 59) / 60, plan.Included.ConnectionMinutes},
		{MetricTransfer, "bytes of data transfer", u.TransferBytes, plan.Included.TransferBytes},
		{MetricStorage, "byte-hours of storage", u.StorageByteHours, plan.Included.StorageByteHours},
	} {
		if _, priced := plan.Overage[m.name]; !priced && m.included > 0 && m.used >= m.included {
			return true, fmt.Sprintf("Your %s plan's %d included %s for this month are used up (%d used).", plan.Name, m.included, m.label, m.used)
		}
	}
	return false, ""
}

// EnforceLimits checks every org that used the service this period, or is
// limited: one over its limit is limited as its subscription says
// (throttle or suspend; instances created since are limited too), one no
// longer over it (an upgrade, a higher limit, a new period) is released.
// It returns the orgs whose limit started or ended.
func (s *Service) EnforceLimits(ctx context.Context, lim OrgLimiter, now time.Time) ([]string, error) {
	p := PeriodOf(now)
	rows, err := s.db.Query(ctx, `SELECT org_id FROM subscriptions WHERE limited_since IS NOT NULL
		UNION SELECT DISTINCT org_id FROM usage_buckets WHERE step_seconds = 3600 AND bucket_start >= $1`, p.Start)
	if err != nil {
		return nil, fmt.Errorf("limit check: %w", err)
	}
	orgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("limit check: %w", err)
	}
	var changed []string
	for _, org := range orgs {
		sub, err := s.Subscription(ctx, org)
		if err != nil {
			return changed, err
		}
		plan, err := s.plans.Get(ctx, sub.PlanID)
		if err != nil {
			return changed, err
		}
		d, err := s.Draft(ctx, org, p)
		if err != nil {
			return changed, err
		}
		over, reason := overLimit(sub, plan, d)
		switch {
		case over:
			if _, err := lim.SetOrgLimit(ctx, org, sub.LimitAction, reason); err != nil {
				return changed, err
			}
			if !sub.Limited {
				if _, err := s.db.Exec(ctx, `UPDATE subscriptions SET limited_since = $2 WHERE org_id = $1`, org, now); err != nil {
					return changed, fmt.Errorf("limit org: %w", err)
				}
				s.log.Info("org over its limit", "org", org, "action", sub.LimitAction, "reason", reason)
				changed = append(changed, org)
			}
		case sub.Limited:
			if _, err := lim.SetOrgLimit(ctx, org, "", ""); err != nil {
				return changed, err
			}
			if _, err := s.db.Exec(ctx, `UPDATE subscriptions SET limited_since = NULL WHERE org_id = $1`, org); err != nil {
				return changed, fmt.Errorf("release org: %w", err)
			}
			s.log.Info("org limit lifted", "org", org)
			changed = append(changed, org)
		}
	}
	return changed, nil
}

// RunLimits enforces limits every interval until ctx ends.
func (s *Service) RunLimits(ctx context.Context, lim OrgLimiter, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if _, err := s.EnforceLimits(ctx, lim, now); err != nil && ctx.Err() == nil {
				s.log.Error("billing limits", "error", err)
			}
		}
	}
}
