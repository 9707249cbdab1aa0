package billing

import (
	"context"
	"sync"
	"testing"
	"time"
)

// limits records the limits set on orgs.
type limits struct {
	mu  sync.Mutex
	set map[string]string
	why map[string]string
}

func (l *limits) SetOrgLimit(_ context.Context, org, limit, reason string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.set[org], l.why[org] = limit, reason
	return 1, nil
}

func TestEnforceLimits(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	b := newBilling(t)
	for _, o := range []string{"o-free", "o-spender", "o-fine"} {
		b.org(t, o, now.AddDate(0, -2, 0))
	}
	// o-spender is on Developer with a spend limit just above its base fee.
	if _, err := b.svc.ChangePlan(ctx, "o-spender", "developer", now.AddDate(0, -1, 0)); err != nil {
		t.Fatal(err)
	}
	dev, err := b.svc.Plans().Get(ctx, "developer")
	if err != nil {
		t.Fatal(err)
	}
	limit := dev.BaseCents + 1
	if _, err := b.svc.SetSpendLimit(ctx, "o-spender", &limit, "suspend"); err != nil {
		t.Fatal(err)
	}
	free, err := b.svc.Plans().Get(ctx, "free")
	if err != nil {
		t.Fatal(err)
	}
	b.usage(t, "o-free", now.Add(-time.Hour), free.Included.MessageUnits-1, 60)
	b.usage(t, "o-fine", now.Add(-time.Hour), 10, 60)
	l := &limits{set: map[string]string{}, why: map[string]string{}}
	enforce := func() []string {
		t.Helper()
		ch, err := b.svc.EnforceLimits(ctx, l, now)
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}

	t.Run("within limits nothing happens", func(t *testing.T) {
		if ch := enforce(); len(ch) != 0 || len(l.set) != 0 {
			t.Fatalf("changed %v, limits %v", ch, l.set)
		}
	})
	t.Run("Free's included messages used up: throttled, with the reason", func(t *testing.T) {
		b.usage(t, "o-free", now.Add(-time.Hour), 1, 0)
		if ch := enforce(); len(ch) != 1 || ch[0] != "o-free" || l.set["o-free"] != "throttle" {
			t.Fatalf("changed %v, limits %v", ch, l.set)
		}
		if sub, _ := b.svc.Subscription(ctx, "o-free"); !sub.Limited {
			t.Fatal("subscription not marked limited")
		}
		if l.why["o-free"] == "" {
			t.Fatal("no reason given")
		}
		if ch := enforce(); len(ch) != 0 {
			t.Fatalf("limited twice: %v", ch)
		}
	})
	t.Run("over the spend limit: suspended as the org chose", func(t *testing.T) {
		// Developer overage on messages beyond the included units.
		b.usage(t, "o-spender", now.Add(-time.Hour), dev.Included.MessageUnits+dev.Overage[MetricMessages].Block, 0)
		ch := enforce()
		if len(ch) != 1 || ch[0] != "o-spender" || l.set["o-spender"] != "suspend" {
			t.Fatalf("changed %v, limits %v", ch, l.set)
		}
		if _, ok := l.set["o-fine"]; ok {
			t.Fatal("an org within its limits was limited")
		}
	})
	t.Run("an upgrade lifts the Free cap; a higher spend limit lifts the other", func(t *testing.T) {
		if _, err := b.svc.ChangePlan(ctx, "o-free", "developer", now); err != nil {
			t.Fatal(err)
		}
		higher := int64(1_000_000)
		if _, err := b.svc.SetSpendLimit(ctx, "o-spender", &higher, "suspend"); err != nil {
			t.Fatal(err)
		}
		ch := enforce()
		if len(ch) != 2 || l.set["o-free"] != "" || l.set["o-spender"] != "" {
			t.Fatalf("changed %v, limits %v", ch, l.set)
		}
		if sub, _ := b.svc.Subscription(ctx, "o-free"); sub.Limited {
			t.Fatal("still marked limited")
		}
	})
}

type collected struct{ ids []string }

func (c *collected) Name() string { return "test" }
func (c *collected) Collect(_ context.Context, inv Invoice) error {
	c.ids = append(c.ids, inv.ID)
	return nil
}

func TestClosePeriods(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 0, 5, 0, 0, time.UTC)
	b := newBilling(t)
	b.org(t, "o-old", now.AddDate(0, -2, 0))
	b.org(t, "o-new", now.Add(-time.Minute)) // after November: nothing to bill
	b.usage(t, "o-old", time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC), 5, 60)
	pay := &collected{}
	invs, err := b.svc.ClosePeriods(ctx, pay, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(invs) != 1 || invs[0].OrgID != "o-old" || invs[0].Period != "2026-11" || invs[0].Status != "open" || len(pay.ids) != 1 || pay.ids[0] != invs[0].ID {
		t.Fatalf("invoices %+v, collected %v", invs, pay.ids)
	}
	if again, err := b.svc.ClosePeriods(ctx, pay, now.Add(time.Hour)); err != nil || len(again) != 0 || len(pay.ids) != 1 {
		t.Fatalf("second close: %v %v, collected %v", again, err, pay.ids)
	}
	if _, err := b.svc.ClosePeriods(ctx, Manual{}, invs[0].DueAt.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	inv, err := b.svc.Invoice(ctx, "o-old", invs[0].ID)
	if err != nil || inv.Status != "overdue" {
		t.Fatalf("after the due date: %+v %v", inv, err)
	}
	paid, err := b.svc.MarkPaid(ctx, "o-old", inv.ID, invs[0].DueAt.Add(time.Hour))
	if err != nil || paid.Status != "paid" || paid.PaidAt == nil {
		t.Fatalf("mark paid: %+v %v", paid, err)
	}
	if _, err := b.svc.MarkPaid(ctx, "o-old", inv.ID, now); err == nil {
		t.Fatal("paid twice")
	}
}
