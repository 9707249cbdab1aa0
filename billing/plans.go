package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/tenancy"
)

// Metric names of the metered usage.
const (
	MetricConnectionMinutes = "connection_minutes"
	MetricMessages          = "messages"
	MetricTransfer          = "transfer"
	MetricStorage           = "storage"
)

// Price is an overage price: Cents per started Block of units.
type Price struct {
	Block int64 `json:"block"`
	Cents int64 `json:"cents"`
}

// Included is the usage a plan's base fee covers each period.
type Included struct {
	ConnectionMinutes int64 `json:"connection_minutes"`
	MessageUnits      int64 `json:"message_units"`      // one per started 5 KiB of payload
	TransferBytes     int64 `json:"transfer_bytes"`     // in + out
	StorageByteHours  int64 `json:"storage_byte_hours"` // 1 GB-month = 1e9 × 744 byte-hours
}

// Plan is a price list and the quota set it grants to every instance.
type Plan struct {
	ID        string           `json:"id"`
	Name      string           `json:"name"`
	Position  int              `json:"position"`
	Currency  string           `json:"currency"`
	BaseCents int64            `json:"base_cents"`
	Included  Included         `json:"included"`
	Overage   map[string]Price `json:"overage"` // by metric; a missing metric is capped, not billed
	Quotas    tenancy.Quotas   `json:"quotas"`
	// Limits bound what an org holds on the plan (enforced by the tenancy
	// service; Put leaves them as they are).
	Limits tenancy.PlanLimits `json:"limits"`
}

// Plans reads and edits the plan catalogue.
type Plans struct{ db *pgxpool.Pool }

// NewPlans returns the plan catalogue over db.
func NewPlans(db *pgxpool.Pool) *Plans { return &Plans{db: db} }

const planColumns = `id, name, position, currency, base_cents, included_connection_minutes, included_message_units,
	included_transfer_bytes, included_storage_byte_hours, overage, quotas, limits`

type rowScanner interface{ Scan(dest ...any) error }

func scanPlan(r rowScanner) (Plan, error) {
	var p Plan
	var overage, quotas, limits []byte
	if err := r.Scan(&p.ID, &p.Name, &p.Position, &p.Currency, &p.BaseCents, &p.Included.ConnectionMinutes,
		&p.Included.MessageUnits, &p.Included.TransferBytes, &p.Included.StorageByteHours, &overage, &quotas, &limits); err != nil {
		return Plan{}, err
	}
	if err := json.Unmarshal(overage, &p.Overage); err != nil {
		return Plan{}, fmt.Errorf("plan %s overage: %w", p.ID, err)
	}
	if err := json.Unmarshal(quotas, &p.Quotas); err != nil {
		return Plan{}, fmt.Errorf("plan %s quotas: %w", p.ID, err)
	}
	if err := json.Unmarshal(limits, &p.Limits); err != nil {
		return Plan{}, fmt.Errorf("plan %s limits: %w", p.ID, err)
	}
	return p, nil
}

// List returns every plan, smallest first.
func (s *Plans) List(ctx context.Context) ([]Plan, error) {
	rows, err := s.db.Query(ctx, `SELECT `+planColumns+` FROM plans ORDER BY position`)
	if err != nil {
		return nil, fmt.Errorf("list plans: %w", err)
	}
	defer rows.Close()
	var out []Plan
	for rows.Next() {
		p, err := scanPlan(rows)
		if err != nil {
			return nil, fmt.Errorf("list plans: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// OrgGrant implements tenancy.PlanSource: the org's current plan (Free
// while it has no subscription), read through q.
func (s *Plans) OrgGrant(ctx context.Context, q tenancy.Querier, orgID string) (tenancy.PlanGrant, error) {
	p, err := scanPlan(q.QueryRow(ctx, `SELECT `+planColumns+` FROM plans
		WHERE id = coalesce((SELECT plan_id FROM subscriptions WHERE org_id = $1), 'free')`, orgID))
	if err != nil {
		return tenancy.PlanGrant{}, fmt.Errorf("org plan: %w", err)
	}
	return p.grant(), nil
}

// Grant implements tenancy.PlanSource: plan id, read through q.
func (s *Plans) Grant(ctx context.Context, q tenancy.Querier, id string) (tenancy.PlanGrant, error) {
	p, err := getPlan(ctx, q, id)
	if err != nil {
		return tenancy.PlanGrant{}, err
	}
	return p.grant(), nil
}

// grant is what p grants an org and its instances.
func (p Plan) grant() tenancy.PlanGrant {
	return tenancy.PlanGrant{ID: p.ID, Quotas: p.Quotas, Limits: p.Limits}
}

// Get returns one plan.
func (s *Plans) Get(ctx context.Context, id string) (Plan, error) {
	return getPlan(ctx, s.db, id)
}

func getPlan(ctx context.Context, q tenancy.Querier, id string) (Plan, error) {
	p, err := scanPlan(q.QueryRow(ctx, `SELECT `+planColumns+` FROM plans WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Plan{}, fmt.Errorf("plan %q: %w", id, tenancy.ErrNotFound)
	}
	if err != nil {
		return Plan{}, fmt.Errorf("get plan: %w", err)
	}
	return p, nil
}

// Put updates a plan's prices, allowances and quotas (operator only).
func (s *Plans) Put(ctx context.Context, p Plan) error {
	overage, _ := json.Marshal(p.Overage)
	quotas, _ := json.Marshal(p.Quotas)
	tag, err := s.db.Exec(ctx, `UPDATE plans SET name = $2, base_cents = $3, included_connection_minutes = $4,
		included_message_units = $5, included_transfer_bytes = $6, included_storage_byte_hours = $7,
		overage = $8, quotas = $9, updated_at = now() WHERE id = $1`,
		p.ID, p.Name, p.BaseCents, p.Included.ConnectionMinutes, p.Included.MessageUnits,
		p.Included.TransferBytes, p.Included.StorageByteHours, overage, quotas)
	if err != nil {
		return fmt.Errorf("update plan: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("plan %q: %w", p.ID, tenancy.ErrNotFound)
	}
	return nil
}
