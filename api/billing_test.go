package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/billing"
)

// TestBillingAPI covers plans, subscription changes, the usage draft and
// invoices over HTTP, validated against the spec like every other call.
func TestBillingAPI(t *testing.T) {
	e := newEnv(t)
	a := e.signup(t, "owner@example.com", "Acme")
	base := "/v1/orgs/" + a.Org.ID

	t.Run("plans are listed smallest first without authentication", func(t *testing.T) {
		var out struct {
			Data []struct {
				ID        string `json:"id"`
				BaseCents int64  `json:"base_cents"`
			} `json:"data"`
		}
		e.do(t, req{method: "GET", path: "/v1/plans"}).expect(t, http.StatusOK).decode(t, &out)
		if len(out.Data) != 4 || out.Data[0].ID != "free" || out.Data[3].ID != "enterprise" {
			t.Fatalf("plans %+v", out.Data)
		}
	})

	t.Run("a new org is on Free", func(t *testing.T) {
		var sub billing.Subscription
		e.do(t, req{method: "GET", path: base + "/subscription", token: a.AccessToken}).expect(t, http.StatusOK).decode(t, &sub)
		if sub.PlanID != "free" || sub.LimitAction != "throttle" {
			t.Fatalf("%+v", sub)
		}
	})

	t.Run("upgrade applies at once and is audited", func(t *testing.T) {
		var res billing.ChangeResult
		e.do(t, req{method: "PUT", path: base + "/subscription", token: a.AccessToken,
			body: map[string]any{"plan": "pro", "spend_limit_cents": 20000, "limit_action": "suspend"}}).
			expect(t, http.StatusOK).decode(t, &res)
		if !res.Applied || res.Subscription.PlanID != "pro" || *res.Subscription.SpendLimitCents != 20000 || res.Subscription.LimitAction != "suspend" {
			t.Fatalf("%+v", res)
		}
		var ev struct {
			Data []struct {
				Action string `json:"action"`
			} `json:"data"`
		}
		e.do(t, req{method: "GET", path: base + "/audit-events?action=subscription.update", token: a.AccessToken}).expect(t, http.StatusOK).decode(t, &ev)
		if len(ev.Data) != 1 {
			t.Errorf("audit events %+v", ev.Data)
		}
	})

	t.Run("bad input is refused with problem+json", func(t *testing.T) {
		e.do(t, req{method: "PUT", path: base + "/subscription", token: a.AccessToken, body: map[string]any{"plan": "gold"}}).
			problem(t, http.StatusBadRequest, "invalid-request")
		e.do(t, req{method: "PUT", path: base + "/subscription", token: a.AccessToken, body: map[string]any{"plan": "pro", "limit_action": "explode"}, invalidRequest: true}).
			problem(t, http.StatusBadRequest, "invalid-request")
		e.do(t, req{method: "PUT", path: base + "/subscription", token: a.AccessToken, body: map[string]any{"plan": "pro", "extra": 1}, invalidRequest: true}).
			problem(t, http.StatusBadRequest, "validation-error")
		e.do(t, req{method: "GET", path: base + "/usage?period=2026-13", token: a.AccessToken, invalidRequest: true}).
			problem(t, http.StatusBadRequest, "invalid-request")
		e.do(t, req{method: "PUT", path: base + "/subscription", token: a.AccessToken, body: map[string]any{"plan": "pro"},
			header: map[string]string{"If-Match": `"stale"`}}).problem(t, http.StatusPreconditionFailed, "precondition-failed")
	})

	t.Run("a read key cannot change the plan", func(t *testing.T) {
		k := e.createKey(t, a.AccessToken, a.Org.ID, "reader", "read")
		e.do(t, req{method: "PUT", path: base + "/subscription", token: k.Secret, body: map[string]any{"plan": "free"}}).
			problem(t, http.StatusForbidden, "insufficient-scope")
	})

	t.Run("usage draft and upcoming invoice price the period", func(t *testing.T) {
		var d billing.Draft
		e.do(t, req{method: "GET", path: base + "/invoices/upcoming", token: a.AccessToken}).expect(t, http.StatusOK).decode(t, &d)
		if d.TotalCents <= 0 || len(d.Lines) == 0 || d.Currency != "USD" {
			t.Fatalf("draft %+v", d)
		}
		var u billing.Draft
		e.do(t, req{method: "GET", path: base + "/usage?period=" + time.Now().UTC().Format("2006-01"), token: a.AccessToken}).expect(t, http.StatusOK).decode(t, &u)
		if u.TotalCents != d.TotalCents {
			t.Errorf("usage total %d, upcoming %d", u.TotalCents, d.TotalCents)
		}
	})

	t.Run("finalised invoices are listed, readable and printable", func(t *testing.T) {
		bsvc := billing.NewService(e.db.Pool, nil, e.svc, nil)
		last := billing.PeriodOf(time.Now().UTC().AddDate(0, -1, 0))
		inv, err := bsvc.Finalize(context.Background(), a.Org.ID, last, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Data []billing.Invoice `json:"data"`
		}
		e.do(t, req{method: "GET", path: base + "/invoices", token: a.AccessToken}).expect(t, http.StatusOK).decode(t, &list)
		if len(list.Data) != 1 || list.Data[0].ID != inv.ID || list.Data[0].Number != inv.Number {
			t.Fatalf("invoices %+v", list.Data)
		}
		var got billing.Invoice
		e.do(t, req{method: "GET", path: base + "/invoices/" + inv.ID, token: a.AccessToken}).expect(t, http.StatusOK).decode(t, &got)
		if got.TotalCents != inv.TotalCents {
			t.Errorf("invoice %+v", got)
		}
		page := e.do(t, req{method: "GET", path: base + "/invoices/" + inv.ID + "/print", token: a.AccessToken}).expect(t, http.StatusOK)
		if ct := page.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || !strings.Contains(string(page.body), "Invoice 1") {
			t.Errorf("printable invoice: %s %s", ct, page.body)
		}
		e.do(t, req{method: "GET", path: base + "/invoices/inv-missing", token: a.AccessToken}).problem(t, http.StatusNotFound, "not-found")
	})
}
