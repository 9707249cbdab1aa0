package billing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/tenancy"
)

// ErrInvalid is returned for a request the billing rules refuse.
var ErrInvalid = errors.New("invalid")

// PlanApplier pushes a plan's quotas to an org's instances (through the
// normal config revision). The tenancy service implements it.
type PlanApplier interface {
	ApplyPlan(ctx context.Context, orgID string, plan Plan) error
}

// Orgs is what billing knows of the orgs, asked of their owner (the
// tenancy service implements it): billing reads no table of tenancy's.
type Orgs interface {
	// OrgCreatedAt is when the org was created; false when there is none.
	OrgCreatedAt(ctx context.Context, orgID string) (time.Time, bool, error)
	// OrgsCreatedBefore lists the IDs of the orgs created before t, in ID
	// order.
	OrgsCreatedBefore(ctx context.Context, t time.Time) ([]string, error)
}

// Service runs subscriptions, usage totals and invoices.
type Service struct {
	db      *pgxpool.Pool
	plans   *Plans
	applier PlanApplier
	orgs    Orgs
	log     *slog.Logger
}

// NewService returns the billing service. applier may be nil (quotas are
// then not pushed, as in tests of pricing alone).
func NewService(db *pgxpool.Pool, applier PlanApplier, orgs Orgs, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{db: db, plans: NewPlans(db), applier: applier, orgs: orgs, log: log}
}

// Plans is the plan catalogue.
func (s *Service) Plans() *Plans { return s.plans }

// Subscription is an org's plan and spend settings.
type Subscription struct {
	OrgID           string    `json:"org_id"`
	PlanID          string    `json:"plan"`
	PlanSince       time.Time `json:"plan_since"`
	PendingPlanID   string    `json:"pending_plan,omitempty"`
	SpendLimitCents *int64    `json:"spend_limit_cents"`
	LimitAction     string    `json:"limit_action"`
	Limited         bool      `json:"limited"`
}

// Subscription returns the org's subscription, creating the Free one the
// first time.
func (s *Service) Subscription(ctx context.Context, orgID string) (Subscription, error) {
	if err := s.ensureSubscription(ctx, orgID); err != nil {
		return Subscription{}, err
	}
	return s.subscription(ctx, s.db, orgID, false)
}

// querier is what a pool and a transaction share.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// ensureSubscription gives an org its Free subscription, from the org's
// creation, the first time; an unknown org is ErrNotFound.
func (s *Service) ensureSubscription(ctx context.Context, orgID string) error {
	var exists bool
	if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM subscriptions WHERE org_id = $1)`, orgID).Scan(&exists); err != nil {
		return fmt.Errorf("get subscription: %w", err)
	}
	if exists {
		return nil
	}
	created, ok, err := s.orgs.OrgCreatedAt(ctx, orgID)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	if !ok {
		return fmt.Errorf("org %s: %w", orgID, tenancy.ErrNotFound)
	}
	_, err = s.db.Exec(ctx, `INSERT INTO subscriptions (org_id, plan_id, plan_since) VALUES ($1, 'free', $2) ON CONFLICT (org_id) DO NOTHING`,
		orgID, created)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23503" { // the org was deleted meanwhile
		return fmt.Errorf("org %s: %w", orgID, tenancy.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	return nil
}

// beginLocked starts a transaction holding the org's subscription row
// (FOR UPDATE), creating the subscription first when needed; the caller
// commits or rolls back tx.
func (s *Service) beginLocked(ctx context.Context, orgID string) (pgx.Tx, Subscription, error) {
	if err := s.ensureSubscription(ctx, orgID); err != nil {
		return nil, Subscription{}, err
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, Subscription{}, fmt.Errorf("begin subscription change: %w", err)
	}
	sub, err := s.subscription(ctx, tx, orgID, true)
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, Subscription{}, err
	}
	return tx, sub, nil
}

// switchPlan moves the org from plan from to plan to as of at, recording
// the change (and clearing a pending downgrade).
func switchPlan(ctx context.Context, tx pgx.Tx, orgID, from, to string, at time.Time) error {
	if _, err := tx.Exec(ctx, `INSERT INTO subscription_changes (org_id, from_plan, to_plan, effective) VALUES ($1, $2, $3, $4)`,
		orgID, from, to, at); err != nil {
		return fmt.Errorf("record plan change: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE subscriptions SET plan_id = $2, plan_since = $3, pending_plan_id = NULL, updated_at = now() WHERE org_id = $1`,
		orgID, to, at); err != nil {
		return fmt.Errorf("change plan: %w", err)
	}
	return nil
}

// subscription reads the org's subscription through q (FOR UPDATE when
// lock); ensureSubscription must have run.
func (s *Service) subscription(ctx context.Context, q querier, orgID string, lock bool) (Subscription, error) {
	sql := `SELECT org_id, plan_id, plan_since, coalesce(pending_plan_id, ''), spend_limit_cents, limit_action, limited_since IS NOT NULL
		FROM subscriptions WHERE org_id = $1`
	if lock {
		sql += " FOR UPDATE"
	}
	var sub Subscription
	err := q.QueryRow(ctx, sql, orgID).Scan(&sub.OrgID, &sub.PlanID, &sub.PlanSince, &sub.PendingPlanID, &sub.SpendLimitCents, &sub.LimitAction, &sub.Limited)
	if errors.Is(err, pgx.ErrNoRows) {
		return Subscription{}, fmt.Errorf("org %s: %w", orgID, tenancy.ErrNotFound)
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("get subscription: %w", err)
	}
	return sub, nil
}

// ChangeResult says what a plan change did.
type ChangeResult struct {
	Subscription Subscription `json:"subscription"`
	Applied      bool         `json:"applied"`      // in effect now
	EffectiveAt  time.Time    `json:"effective_at"` // now, or the period end for a deferred downgrade
}

// ChangePlan moves the org to planID. An upgrade applies at once (prorated
// to the second on the invoice); a downgrade applies at once when the
// period's usage so far fits the new plan's allowance, otherwise at the
// period end. Applied changes push the new quotas to the data plane.
func (s *Service) ChangePlan(ctx context.Context, orgID, planID string, now time.Time) (ChangeResult, error) {
	next, err := s.plans.Get(ctx, planID)
	if err != nil {
		return ChangeResult{}, fmt.Errorf("%w: unknown plan %q", ErrInvalid, planID)
	}
	tx, sub, err := s.beginLocked(ctx, orgID)
	if err != nil {
		return ChangeResult{}, err
	}
	defer tx.Rollback(ctx)
	cur, err := getPlan(ctx, tx, sub.PlanID)
	if err != nil {
		return ChangeResult{}, err
	}
	res := ChangeResult{EffectiveAt: now.UTC()}
	switch {
	case next.ID == cur.ID:
		// Choosing the current plan cancels a pending downgrade.
		if _, err := tx.Exec(ctx, `UPDATE subscriptions SET pending_plan_id = NULL, updated_at = now() WHERE org_id = $1`, orgID); err != nil {
			return ChangeResult{}, fmt.Errorf("change plan: %w", err)
		}
		res.Applied = true
	case next.Position > cur.Position || s.fits(ctx, tx, orgID, next, now):
		if err := switchPlan(ctx, tx, orgID, cur.ID, next.ID, now.UTC()); err != nil {
			return ChangeResult{}, err
		}
		res.Applied = true
	default:
		if _, err := tx.Exec(ctx, `UPDATE subscriptions SET pending_plan_id = $2, updated_at = now() WHERE org_id = $1`, orgID, next.ID); err != nil {
			return ChangeResult{}, fmt.Errorf("schedule downgrade: %w", err)
		}
		res.EffectiveAt = PeriodOf(now).End
	}
	if err := tx.Commit(ctx); err != nil {
		return ChangeResult{}, fmt.Errorf("change plan: %w", err)
	}
	if res.Applied && s.applier != nil && next.ID != cur.ID {
		if err := s.applier.ApplyPlan(ctx, orgID, next); err != nil {
			return ChangeResult{}, fmt.Errorf("push %s quotas: %w", next.ID, err)
		}
	}
	res.Subscription, err = s.Subscription(ctx, orgID)
	return res, err
}

// fits reports whether the period's usage so far is within plan's allowance.
func (s *Service) fits(ctx context.Context, q querier, orgID string, plan Plan, now time.Time) bool {
	u, err := s.usage(ctx, q, orgID, PeriodOf(now))
	if err != nil {
		return false
	}
	return ceilDiv(u.ConnectionSeconds, 60) <= plan.Included.ConnectionMinutes && u.MessageUnits <= plan.Included.MessageUnits &&
		u.TransferBytes <= plan.Included.TransferBytes && u.StorageByteHours <= plan.Included.StorageByteHours
}

// SetSpendLimit sets (or with nil clears) the monthly spend limit and what
// happens at it.
func (s *Service) SetSpendLimit(ctx context.Context, orgID string, cents *int64, action string) (Subscription, error) {
	if action != "throttle" && action != "suspend" {
		return Subscription{}, fmt.Errorf("%w: limit_action must be throttle or suspend", ErrInvalid)
	}
	if cents != nil && *cents < 0 {
		return Subscription{}, fmt.Errorf("%w: spend_limit_cents must not be negative", ErrInvalid)
	}
	if _, err := s.Subscription(ctx, orgID); err != nil {
		return Subscription{}, err
	}
	if _, err := s.db.Exec(ctx, `UPDATE subscriptions SET spend_limit_cents = $2, limit_action = $3, updated_at = now() WHERE org_id = $1`,
		orgID, cents, action); err != nil {
		return Subscription{}, fmt.Errorf("set spend limit: %w", err)
	}
	return s.Subscription(ctx, orgID)
}

// Usage totals the org's metered usage over a period, from the hourly
// buckets (message units, connection time, transfer in+out, stored
// byte-hours).
func (s *Service) Usage(ctx context.Context, orgID string, p Period) (Usage, error) {
	return s.usage(ctx, s.db, orgID, p)
}

func (s *Service) usage(ctx context.Context, q querier, orgID string, p Period) (Usage, error) {
	var u Usage
	err := q.QueryRow(ctx, `SELECT coalesce(sum(connection_seconds), 0), coalesce(sum(message_units_in + message_units_out), 0),
		coalesce(sum(bytes_in + bytes_out), 0), coalesce(sum(stored_bytes), 0)
		FROM usage_buckets WHERE org_id = $1 AND step_seconds = 3600 AND bucket_start >= $2 AND bucket_start < $3`,
		orgID, p.Start, p.End).Scan(&u.ConnectionSeconds, &u.MessageUnits, &u.TransferBytes, &u.StorageByteHours)
	if err != nil {
		return Usage{}, fmt.Errorf("usage totals: %w", err)
	}
	return u, nil
}

// segments reconstructs which plan was in effect over the period.
func (s *Service) segments(ctx context.Context, q querier, sub Subscription, p Period) ([]Segment, error) {
	rows, err := q.Query(ctx, `SELECT from_plan, to_plan, effective FROM subscription_changes
		WHERE org_id = $1 AND effective > $2 ORDER BY effective, id`, sub.OrgID, p.Start)
	if err != nil {
		return nil, fmt.Errorf("plan history: %w", err)
	}
	type change struct {
		from, to string
		at       time.Time
	}
	var all []change
	for rows.Next() {
		var c change
		if err := rows.Scan(&c.from, &c.to, &c.at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("plan history: %w", err)
		}
		all = append(all, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("plan history: %w", err)
	}
	// The plan at the period start: the target of the last change at or
	// before it, else the origin of the first change after it, else the
	// current plan.
	var startPlan string
	err = q.QueryRow(ctx, `SELECT to_plan FROM subscription_changes WHERE org_id = $1 AND effective <= $2
		ORDER BY effective DESC, id DESC LIMIT 1`, sub.OrgID, p.Start).Scan(&startPlan)
	switch {
	case err == nil:
	case errors.Is(err, pgx.ErrNoRows) && len(all) > 0:
		startPlan = all[0].from
	case errors.Is(err, pgx.ErrNoRows):
		startPlan = sub.PlanID
	default:
		return nil, fmt.Errorf("plan history: %w", err)
	}
	get := func(id string) (Plan, error) { return getPlan(ctx, q, id) }
	first, err := get(startPlan)
	if err != nil {
		return nil, err
	}
	segs := []Segment{{Plan: first, From: p.Start, To: p.End}}
	for _, c := range all {
		if !c.at.Before(p.End) {
			break
		}
		pl, err := get(c.to)
		if err != nil {
			return nil, err
		}
		segs[len(segs)-1].To = c.at
		segs = append(segs, Segment{Plan: pl, From: c.at, To: p.End})
	}
	return segs, nil
}

// Draft is an invoice before finalisation.
type Draft struct {
	OrgID      string    `json:"org_id"`
	Period     string    `json:"period"`
	Start      time.Time `json:"period_start"`
	End        time.Time `json:"period_end"`
	Currency   string    `json:"currency"`
	Usage      Usage     `json:"usage"`
	Lines      []Line    `json:"lines"`
	TotalCents int64     `json:"total_cents"`
}

// Draft prices the org's period as it stands.
func (s *Service) Draft(ctx context.Context, orgID string, p Period) (Draft, error) {
	sub, err := s.Subscription(ctx, orgID)
	if err != nil {
		return Draft{}, err
	}
	return s.draft(ctx, s.db, sub, p)
}

func (s *Service) draft(ctx context.Context, q querier, sub Subscription, p Period) (Draft, error) {
	segs, err := s.segments(ctx, q, sub, p)
	if err != nil {
		return Draft{}, err
	}
	u, err := s.usage(ctx, q, sub.OrgID, p)
	if err != nil {
		return Draft{}, err
	}
	lines, total, err := Compute(p, segs, u)
	if err != nil {
		return Draft{}, err
	}
	return Draft{OrgID: sub.OrgID, Period: p.String(), Start: p.Start, End: p.End, Currency: segs[0].Plan.Currency,
		Usage: u, Lines: lines, TotalCents: total}, nil
}

// Invoice is a finalised, immutable invoice.
type Invoice struct {
	ID          string     `json:"id"`
	OrgID       string     `json:"org_id"`
	Number      int64      `json:"number"`
	Period      string     `json:"period"`
	Start       time.Time  `json:"period_start"`
	End         time.Time  `json:"period_end"`
	Currency    string     `json:"currency"`
	TotalCents  int64      `json:"total_cents"`
	Status      string     `json:"status"`
	FinalizedAt time.Time  `json:"finalized_at"`
	DueAt       time.Time  `json:"due_at"`
	PaidAt      *time.Time `json:"paid_at"`
	Lines       []Line     `json:"lines"`
}

// Finalize closes the org's period into an invoice numbered gap-free. It is
// idempotent: finalising a period twice returns the first invoice. A pending
// downgrade takes effect at the period end.
func (s *Service) Finalize(ctx context.Context, orgID string, p Period, now time.Time) (Invoice, error) {
	if now.Before(p.End) {
		return Invoice{}, fmt.Errorf("%w: period %s has not ended", ErrInvalid, p)
	}
	if inv, err := s.invoiceByPeriod(ctx, orgID, p); err == nil {
		return inv, nil
	} else if !errors.Is(err, tenancy.ErrNotFound) {
		return Invoice{}, err
	}
	tx, sub, err := s.beginLocked(ctx, orgID) // serialises finalisation per org
	if err != nil {
		return Invoice{}, err
	}
	defer tx.Rollback(ctx)
	if inv, err := s.invoiceByPeriodTx(ctx, tx, orgID, p); err == nil {
		return inv, nil
	}
	d, err := s.draft(ctx, tx, sub, p)
	if err != nil {
		return Invoice{}, err
	}
	var number int64
	// One counter row, locked until commit: numbers are gap-free across orgs.
	if err := tx.QueryRow(ctx, `UPDATE invoice_counter SET last = last + 1 RETURNING last`).Scan(&number); err != nil {
		return Invoice{}, fmt.Errorf("number invoice: %w", err)
	}
	id := "inv-" + randomID(10)
	due := now.UTC().AddDate(0, 0, 14)
	if _, err := tx.Exec(ctx, `INSERT INTO invoices (id, org_id, number, period_start, period_end, currency, total_cents, status, finalized_at, due_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9)`, id, orgID, number, p.Start, p.End, d.Currency, d.TotalCents, now.UTC(), due); err != nil {
		return Invoice{}, fmt.Errorf("store invoice: %w", err)
	}
	for i, l := range d.Lines {
		if _, err := tx.Exec(ctx, `INSERT INTO invoice_lines (invoice_id, position, kind, description, quantity, unit, amount_cents)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, i, l.Kind, l.Description, l.Quantity, l.Unit, l.AmountCents); err != nil {
			return Invoice{}, fmt.Errorf("store invoice line: %w", err)
		}
	}
	var applied *Plan
	if sub.PendingPlanID != "" {
		pl, err := getPlan(ctx, tx, sub.PendingPlanID)
		if err != nil {
			return Invoice{}, err
		}
		if err := switchPlan(ctx, tx, orgID, sub.PlanID, pl.ID, p.End); err != nil {
			return Invoice{}, fmt.Errorf("apply downgrade: %w", err)
		}
		applied = &pl
	}
	if err := tx.Commit(ctx); err != nil {
		return Invoice{}, fmt.Errorf("finalize: %w", err)
	}
	if applied != nil && s.applier != nil {
		if err := s.applier.ApplyPlan(ctx, orgID, *applied); err != nil {
			s.log.Error("push quotas after downgrade", "org", orgID, "plan", applied.ID, "error", err)
		}
	}
	return s.Invoice(ctx, orgID, id)
}

func (s *Service) invoiceByPeriod(ctx context.Context, orgID string, p Period) (Invoice, error) {
	return s.invoiceByPeriodTx(ctx, s.db, orgID, p)
}

func (s *Service) invoiceByPeriodTx(ctx context.Context, q querier, orgID string, p Period) (Invoice, error) {
	var id string
	err := q.QueryRow(ctx, `SELECT id FROM invoices WHERE org_id = $1 AND period_start = $2`, orgID, p.Start).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Invoice{}, tenancy.ErrNotFound
	}
	if err != nil {
		return Invoice{}, fmt.Errorf("find invoice: %w", err)
	}
	return s.invoice(ctx, q, orgID, id)
}

// Invoice returns one of the org's invoices with its lines; another org's
// invoice is tenancy.ErrNotFound.
func (s *Service) Invoice(ctx context.Context, orgID, id string) (Invoice, error) {
	return s.invoice(ctx, s.db, orgID, id)
}

func (s *Service) invoice(ctx context.Context, q querier, orgID, id string) (Invoice, error) {
	var inv Invoice
	err := q.QueryRow(ctx, `SELECT id, org_id, number, period_start, period_end, currency, total_cents, status, finalized_at, due_at, paid_at
		FROM invoices WHERE org_id = $1 AND id = $2`, orgID, id).Scan(&inv.ID, &inv.OrgID, &inv.Number, &inv.Start, &inv.End,
		&inv.Currency, &inv.TotalCents, &inv.Status, &inv.FinalizedAt, &inv.DueAt, &inv.PaidAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Invoice{}, fmt.Errorf("invoice %s: %w", id, tenancy.ErrNotFound)
	}
	if err != nil {
		return Invoice{}, fmt.Errorf("get invoice: %w", err)
	}
	inv.Period = inv.Start.UTC().Format("2006-01")
	rows, err := q.Query(ctx, `SELECT kind, description, quantity, unit, amount_cents FROM invoice_lines WHERE invoice_id = $1 ORDER BY position`, id)
	if err != nil {
		return Invoice{}, fmt.Errorf("invoice lines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var l Line
		if err := rows.Scan(&l.Kind, &l.Description, &l.Quantity, &l.Unit, &l.AmountCents); err != nil {
			return Invoice{}, fmt.Errorf("invoice lines: %w", err)
		}
		inv.Lines = append(inv.Lines, l)
	}
	return inv, rows.Err()
}

// Invoices lists the org's invoices, newest first.
func (s *Service) Invoices(ctx context.Context, orgID string) ([]Invoice, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM invoices WHERE org_id = $1 ORDER BY period_start DESC`, orgID)
	if err != nil {
		return nil, fmt.Errorf("list invoices: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list invoices: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	out := make([]Invoice, 0, len(ids))
	for _, id := range ids {
		inv, err := s.Invoice(ctx, orgID, id)
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}

// MarkPaid records a manual payment (the built-in "invoice / manual"
// payment method; no call leaves the machine).
func (s *Service) MarkPaid(ctx context.Context, orgID, id string, at time.Time) (Invoice, error) {
	tag, err := s.db.Exec(ctx, `UPDATE invoices SET status = 'paid', paid_at = $3 WHERE org_id = $1 AND id = $2 AND status IN ('open', 'overdue')`,
		orgID, id, at.UTC())
	if err != nil {
		return Invoice{}, fmt.Errorf("mark paid: %w", err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := s.Invoice(ctx, orgID, id); err != nil {
			return Invoice{}, err
		}
		return Invoice{}, fmt.Errorf("%w: invoice %s is not open", ErrInvalid, id)
	}
	return s.Invoice(ctx, orgID, id)
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(idAlphabet[int(c)%len(idAlphabet)])
	}
	return sb.String()
}
