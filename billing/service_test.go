package billing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/internal/pgtest"
	"github.com/aeriemq/aerie/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

type applied struct {
	mu    sync.Mutex
	plans []string
}

func (a *applied) ApplyPlan(_ context.Context, orgID string, p Plan) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.plans = append(a.plans, orgID+":"+p.ID)
	return nil
}

type billingBundle struct {
	svc     *Service
	db      *pgtest.DB
	applied *applied
}

func newBilling(t *testing.T) *billingBundle {
	t.Helper()
	db := pgtest.New(t)
	a := &applied{}
	return &billingBundle{svc: NewService(db.Pool, a, tenancy.NewService(db.Pool, nil), nil), db: db, applied: a}
}

func (b *billingBundle) org(t *testing.T, id string, created time.Time) {
	t.Helper()
	if _, err := b.db.Pool.Exec(context.Background(), `INSERT INTO orgs (id, name, created_at) VALUES ($1, $1, $2)`, id, created); err != nil {
		t.Fatal(err)
	}
}

// usage writes an hourly bucket for the org directly (metering has its own tests).
func (b *billingBundle) usage(t *testing.T, org string, at time.Time, units, connSeconds int64) {
	t.Helper()
	_, err := b.db.Pool.Exec(context.Background(), `INSERT INTO usage_buckets (instance_id, org_id, step_seconds, bucket_start, message_units_in, connection_seconds)
		VALUES ($1, $2, 3600, $3, $4, $5)
		ON CONFLICT (instance_id, step_seconds, bucket_start) DO UPDATE SET message_units_in = usage_buckets.message_units_in + EXCLUDED.message_units_in`,
		"i-"+org, org, at.UTC().Truncate(time.Hour), units, connSeconds)
	if err != nil {
		t.Fatal(err)
	}
}

func TestPlansCatalogue(t *testing.T) {
	b := newBilling(t)
	ps, err := b.svc.Plans().List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
		if p.Quotas.MaxConnections <= 0 || p.Quotas.MaxPayloadBytes <= 0 {
			t.Errorf("plan %s grants no quotas: %+v", p.ID, p.Quotas)
		}
	}
	if fmt.Sprint(ids) != "[free developer pro enterprise]" {
		t.Fatalf("plans %v", ids)
	}
	if ps[0].BaseCents != 0 || len(ps[0].Overage) != 0 {
		t.Errorf("free plan costs money: %+v", ps[0])
	}
	if _, err := b.svc.Plans().Get(context.Background(), "gold"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("unknown plan: %v", err)
	}
}

func TestSubscriptions(t *testing.T) {
	ctx := context.Background()
	nov := PeriodOf(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	mid := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)

	t.Run("a new org is on Free", func(t *testing.T) {
		b := newBilling(t)
		b.org(t, "o-a", nov.Start)
		sub, err := b.svc.Subscription(ctx, "o-a")
		if err != nil || sub.PlanID != "free" {
			t.Fatalf("%+v %v", sub, err)
		}
		if _, err := b.svc.Subscription(ctx, "o-missing"); !errors.Is(err, tenancy.ErrNotFound) {
			t.Errorf("unknown org: %v", err)
		}
	})

	t.Run("upgrade mid-month is prorated to the second and pushed", func(t *testing.T) {
		b := newBilling(t)
		b.org(t, "o-a", nov.Start.AddDate(0, -1, 0))
		if _, err := b.svc.ChangePlan(ctx, "o-a", "developer", nov.Start); err != nil {
			t.Fatal(err)
		}
		res, err := b.svc.ChangePlan(ctx, "o-a", "pro", mid)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Applied || res.Subscription.PlanID != "pro" {
			t.Fatalf("%+v", res)
		}
		d, err := b.svc.Draft(ctx, "o-a", nov)
		if err != nil {
			t.Fatal(err)
		}
		// Developer base 1500 for the month, 15/30 days unused credited, Pro 9900 × 15/30 charged.
		want := map[string]int64{LineBase: 1500, LineProrationCredit: -750, LineProrationCharge: 4950}
		for _, l := range d.Lines {
			if w, ok := want[l.Kind]; !ok || w != l.AmountCents {
				t.Errorf("line %+v", l)
			}
		}
		if d.TotalCents != 1500-750+4950 {
			t.Errorf("total %d", d.TotalCents)
		}
		if fmt.Sprint(b.applied.plans) != "[o-a:developer o-a:pro]" {
			t.Errorf("quotas pushed: %v", b.applied.plans)
		}
	})

	t.Run("downgrade waits for the period end when usage does not fit", func(t *testing.T) {
		b := newBilling(t)
		b.org(t, "o-a", nov.Start.AddDate(0, -1, 0))
		if _, err := b.svc.ChangePlan(ctx, "o-a", "pro", nov.Start); err != nil {
			t.Fatal(err)
		}
		b.usage(t, "o-a", nov.Start.Add(time.Hour), 50_000_000, 0) // above Developer's 20M
		res, err := b.svc.ChangePlan(ctx, "o-a", "developer", mid)
		if err != nil {
			t.Fatal(err)
		}
		if res.Applied || res.Subscription.PlanID != "pro" || res.Subscription.PendingPlanID != "developer" || !res.EffectiveAt.Equal(nov.End) {
			t.Fatalf("%+v", res)
		}
		inv, err := b.svc.Finalize(ctx, "o-a", nov, nov.End.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if inv.TotalCents != 9900 {
			t.Errorf("November billed %d, want the full Pro fee 9900: %+v", inv.TotalCents, inv.Lines)
		}
		sub, _ := b.svc.Subscription(ctx, "o-a")
		if sub.PlanID != "developer" || sub.PendingPlanID != "" {
			t.Errorf("after period end: %+v", sub)
		}
		dec, err := b.svc.Draft(ctx, "o-a", PeriodOf(nov.End))
		if err != nil || dec.TotalCents != 1500 {
			t.Errorf("December draft %d (%v), want Developer's 1500", dec.TotalCents, err)
		}
	})

	t.Run("downgrade applies at once when usage fits", func(t *testing.T) {
		b := newBilling(t)
		b.org(t, "o-a", nov.Start.AddDate(0, -1, 0))
		if _, err := b.svc.ChangePlan(ctx, "o-a", "pro", nov.Start); err != nil {
			t.Fatal(err)
		}
		b.usage(t, "o-a", nov.Start.Add(time.Hour), 1000, 60)
		res, err := b.svc.ChangePlan(ctx, "o-a", "developer", mid)
		if err != nil || !res.Applied || res.Subscription.PlanID != "developer" {
			t.Fatalf("%+v %v", res, err)
		}
	})

	t.Run("spend limit validation", func(t *testing.T) {
		b := newBilling(t)
		b.org(t, "o-a", nov.Start)
		neg := int64(-1)
		if _, err := b.svc.SetSpendLimit(ctx, "o-a", &neg, "throttle"); !errors.Is(err, ErrInvalid) {
			t.Errorf("negative limit: %v", err)
		}
		if _, err := b.svc.SetSpendLimit(ctx, "o-a", nil, "explode"); !errors.Is(err, ErrInvalid) {
			t.Errorf("bad action: %v", err)
		}
		lim := int64(5000)
		sub, err := b.svc.SetSpendLimit(ctx, "o-a", &lim, "suspend")
		if err != nil || *sub.SpendLimitCents != 5000 || sub.LimitAction != "suspend" {
			t.Fatalf("%+v %v", sub, err)
		}
	})
}

func TestInvoices(t *testing.T) {
	ctx := context.Background()
	oct := PeriodOf(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC))

	t.Run("numbers are gap-free under concurrent finalisation", func(t *testing.T) {
		b := newBilling(t)
		const orgs = 12
		for i := 0; i < orgs; i++ {
			b.org(t, fmt.Sprintf("o-%02d", i), oct.Start.AddDate(0, -1, 0))
		}
		var wg sync.WaitGroup
		numbers := make(chan int64, orgs*2)
		errs := make(chan error, orgs*2)
		for i := 0; i < orgs; i++ {
			for rep := 0; rep < 2; rep++ { // finalising twice must not take two numbers
				wg.Add(1)
				go func(org string) {
					defer wg.Done()
					inv, err := b.svc.Finalize(ctx, org, oct, oct.End.Add(time.Hour))
					if err != nil {
						errs <- err
						return
					}
					numbers <- inv.Number
				}(fmt.Sprintf("o-%02d", i))
			}
		}
		wg.Wait()
		close(numbers)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		seen := map[int64]int{}
		for n := range numbers {
			seen[n]++
		}
		var ns []int64
		for n, c := range seen {
			if c != 2 {
				t.Errorf("number %d returned %d times, want 2 (same invoice twice)", n, c)
			}
			ns = append(ns, n)
		}
		sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
		for i, n := range ns {
			if n != int64(i+1) {
				t.Fatalf("numbers %v are not 1..%d without gaps", ns, orgs)
			}
		}
	})

	t.Run("finalised invoices are immutable", func(t *testing.T) {
		b := newBilling(t)
		b.org(t, "o-a", oct.Start)
		if _, err := b.svc.ChangePlan(ctx, "o-a", "developer", oct.Start); err != nil {
			t.Fatal(err)
		}
		inv, err := b.svc.Finalize(ctx, "o-a", oct, oct.End)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`UPDATE invoices SET total_cents = 1 WHERE id = $1`,
			`DELETE FROM invoices WHERE id = $1`,
			`UPDATE invoice_lines SET amount_cents = 1 WHERE invoice_id = $1`,
			`DELETE FROM invoice_lines WHERE invoice_id = $1`,
		} {
			if _, err := b.db.Pool.Exec(ctx, q, inv.ID); err == nil {
				t.Errorf("%s succeeded on a finalised invoice", q)
			}
		}
		// Usage arriving late does not change a finalised invoice.
		b.usage(t, "o-a", oct.Start.Add(time.Hour), 999_000_000, 0)
		again, err := b.svc.Invoice(ctx, "o-a", inv.ID)
		if err != nil || again.TotalCents != inv.TotalCents || len(again.Lines) != len(inv.Lines) {
			t.Fatalf("invoice changed: %+v → %+v (%v)", inv, again, err)
		}
		paid, err := b.svc.MarkPaid(ctx, "o-a", inv.ID, oct.End.Add(48*time.Hour))
		if err != nil || paid.Status != "paid" || paid.PaidAt == nil {
			t.Fatalf("mark paid: %+v %v", paid, err)
		}
		if _, err := b.svc.MarkPaid(ctx, "o-a", inv.ID, time.Now()); !errors.Is(err, ErrInvalid) {
			t.Errorf("paying twice: %v", err)
		}
	})

	t.Run("another org's invoice is not found", func(t *testing.T) {
		b := newBilling(t)
		b.org(t, "o-a", oct.Start)
		b.org(t, "o-b", oct.Start)
		inv, err := b.svc.Finalize(ctx, "o-a", oct, oct.End)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Invoice(ctx, "o-b", inv.ID); !errors.Is(err, tenancy.ErrNotFound) {
			t.Errorf("org B reads org A's invoice: %v", err)
		}
		if _, err := b.svc.MarkPaid(ctx, "o-b", inv.ID, time.Now()); !errors.Is(err, tenancy.ErrNotFound) {
			t.Errorf("org B pays org A's invoice: %v", err)
		}
		list, err := b.svc.Invoices(ctx, "o-b")
		if err != nil || len(list) != 0 {
			t.Errorf("org B lists %d invoices (%v)", len(list), err)
		}
	})

	t.Run("an open period cannot be finalised", func(t *testing.T) {
		b := newBilling(t)
		b.org(t, "o-a", oct.Start)
		if _, err := b.svc.Finalize(ctx, "o-a", oct, oct.End.Add(-time.Second)); !errors.Is(err, ErrInvalid) {
			t.Errorf("finalised before the end: %v", err)
		}
	})
}
