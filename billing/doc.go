// Package billing owns what tenants pay for, over Postgres: usage metering
// (the data plane's usage reports rolled up into per-instance time buckets,
// and the metric series of the charts; the latest stored bytes per
// provisioned topic), the plan catalogue (prices,
// allowances, and the quotas and limits a plan grants, which tenancy reads
// as a tenancy.PlanSource), subscriptions and plan changes, spend limits
// (throttle or suspend through an OrgLimiter), and invoices with their
// month-end close and manual payment. It reads no table of tenancy's: orgs
// come through Orgs, instance owners through OrgResolver, and plan quotas
// reach instances through PlanApplier. It knows nothing of HTTP.
package billing
