package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Payments collects finalised invoices. Manual, the built-in method, makes
// no call off the machine: an invoice is open until the operator records
// the customer's payment (MarkPaid) and overdue once past its due date.
// Another method (a card processor) would implement the same interface.
type Payments interface {
	// Name names the method ("manual").
	Name() string
	// Collect is called once for every newly finalised invoice.
	Collect(ctx context.Context, inv Invoice) error
}

// Manual is the built-in "invoice / manual" payment method.
type Manual struct{}

// Name implements Payments.
func (Manual) Name() string { return "manual" }

// Collect implements Payments: the invoice waits for MarkPaid.
func (Manual) Collect(context.Context, Invoice) error { return nil }

// ClosePeriods finalises last month's invoice for every org that has none
// yet (idempotent; orgs created after the period get none), hands each new
// invoice to pay, and marks open invoices past their due date overdue. It
// returns the invoices it finalised.
func (s *Service) ClosePeriods(ctx context.Context, pay Payments, now time.Time) ([]Invoice, error) {
	prev := PeriodOf(PeriodOf(now).Start.Add(-time.Second))
	orgs, err := s.uninvoiced(ctx, prev)
	if err != nil {
		return nil, fmt.Errorf("close periods: %w", err)
	}
	var out []Invoice
	for _, org := range orgs {
		inv, err := s.Finalize(ctx, org, prev, now)
		if err != nil {
			return out, fmt.Errorf("finalize %s %s: %w", org, prev, err)
		}
		if pay != nil {
			if err := pay.Collect(ctx, inv); err != nil {
				s.log.Error("collect payment", "invoice", inv.ID, "method", pay.Name(), "error", err)
			}
		}
		out = append(out, inv)
	}
	if _, err := s.db.Exec(ctx, `UPDATE invoices SET status = 'overdue' WHERE status = 'open' AND due_at < $1`, now.UTC()); err != nil {
		return out, fmt.Errorf("overdue invoices: %w", err)
	}
	return out, nil
}

// uninvoiced lists the orgs that existed before the end of period p and
// have no invoice for it, in ID order.
func (s *Service) uninvoiced(ctx context.Context, p Period) ([]string, error) {
	orgs, err := s.orgs.OrgsCreatedBefore(ctx, p.End)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT org_id FROM invoices WHERE period_start = $1`, p.Start)
	if err != nil {
		return nil, err
	}
	invoiced, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	done := make(map[string]bool, len(invoiced))
	for _, o := range invoiced {
		done[o] = true
	}
	out := orgs[:0]
	for _, o := range orgs {
		if !done[o] {
			out = append(out, o)
		}
	}
	return out, nil
}

// RunPeriodClose closes periods every interval until ctx ends.
func (s *Service) RunPeriodClose(ctx context.Context, pay Payments, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if invs, err := s.ClosePeriods(ctx, pay, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Error("close billing periods", "error", err)
		} else if len(invs) > 0 {
			s.log.Info("finalised invoices", "count", len(invs))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
