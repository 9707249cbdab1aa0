package api

import (
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/tenancy"
)

// planJSON is a plan as the API shows it.
type planJSON struct {
	ID        string                   `json:"id"`
	Name      string                   `json:"name"`
	Currency  string                   `json:"currency"`
	BaseCents int64                    `json:"base_cents"`
	Included  billing.Included         `json:"included"`
	Overage   map[string]billing.Price `json:"overage"`
	Quotas    any                      `json:"quotas"`
	Limits    tenancy.PlanLimits       `json:"limits"`
}

func toPlan(p billing.Plan) planJSON {
	ov := p.Overage
	if ov == nil {
		ov = map[string]billing.Price{}
	}
	return planJSON{ID: p.ID, Name: p.Name, Currency: p.Currency, BaseCents: p.BaseCents, Included: p.Included, Overage: ov, Quotas: p.Quotas, Limits: p.Limits}
}

func (a *API) listPlans(w http.ResponseWriter, r *http.Request) {
	ps, err := a.billing.Plans().List(r.Context())
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	out := make([]planJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, toPlan(p))
	}
	WriteJSONWithETag(w, http.StatusOK, map[string]any{"data": out})
}

func (a *API) getSubscription(w http.ResponseWriter, r *http.Request) {
	sub, err := a.billing.Subscription(r.Context(), PrincipalFrom(r.Context()).OrgID)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, sub)
}

func (a *API) putSubscription(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Plan            string  `json:"plan"`
		SpendLimitCents *int64  `json:"spend_limit_cents"`
		LimitAction     *string `json:"limit_action"`
	}
	if err := DecodeJSON(w, r, &in); err != nil {
		a.WriteError(w, r, err)
		return
	}
	p := PrincipalFrom(r.Context())
	ctx := r.Context()
	cur, err := a.billing.Subscription(ctx, p.OrgID)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := CheckIfMatch(r, cur); err != nil {
		a.WriteError(w, r, err)
		return
	}
	if in.Plan == "" {
		a.WriteError(w, r, fmt.Errorf("%w: plan is required", billing.ErrInvalid))
		return
	}
	action := cur.LimitAction
	if in.LimitAction != nil {
		action = *in.LimitAction
	}
	if _, err := a.billing.SetSpendLimit(ctx, p.OrgID, in.SpendLimitCents, action); err != nil {
		a.WriteError(w, r, err)
		return
	}
	res, err := a.billing.ChangePlan(ctx, p.OrgID, in.Plan, a.now())
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if err := a.svc.RecordAudit(ctx, ActorOf(r), p.OrgID, "subscription.update", in.Plan); err != nil {
		a.log.Warn("audit subscription change", "error", err)
	}
	WriteJSONWithETag(w, http.StatusOK, res)
}

func (a *API) getUsage(w http.ResponseWriter, r *http.Request) {
	period := billing.PeriodOf(a.now())
	if s := r.URL.Query().Get("period"); s != "" {
		var err error
		if period, err = billing.ParsePeriod(s); err != nil {
			a.WriteError(w, r, fmt.Errorf("%w: %v", billing.ErrInvalid, err))
			return
		}
	}
	d, err := a.billing.Draft(r.Context(), PrincipalFrom(r.Context()).OrgID, period)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	ts, err := a.latestTopicStorage(r.Context(), PrincipalFrom(r.Context()).OrgID, "")
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, usageOut{Draft: d, TopicStorage: ts})
}

func (a *API) upcomingInvoice(w http.ResponseWriter, r *http.Request) {
	d, err := a.billing.Draft(r.Context(), PrincipalFrom(r.Context()).OrgID, billing.PeriodOf(a.now()))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, d)
}

func (a *API) listInvoices(w http.ResponseWriter, r *http.Request) {
	invs, err := a.billing.Invoices(r.Context(), PrincipalFrom(r.Context()).OrgID)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if invs == nil {
		invs = []billing.Invoice{}
	}
	WriteJSONWithETag(w, http.StatusOK, map[string]any{"data": invs})
}

func (a *API) getInvoice(w http.ResponseWriter, r *http.Request) {
	inv, err := a.billing.Invoice(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "invoice_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	WriteJSONWithETag(w, http.StatusOK, inv)
}

var invoiceHTML = template.Must(template.New("invoice").Funcs(template.FuncMap{
	"money": func(cents int64, currency string) string {
		sign := ""
		if cents < 0 {
			sign, cents = "−", -cents
		}
		return fmt.Sprintf("%s%d.%02d %s", sign, cents/100, cents%100, currency)
	},
	"date": func(t time.Time) string { return t.UTC().Format("2 January 2006") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice {{.Number}}</title>
<style>body{font:14px/1.5 system-ui,sans-serif;max-width:760px;margin:40px auto;color:#111}table{width:100%;border-collapse:collapse}
th,td{text-align:left;padding:6px;border-bottom:1px solid #ddd}td.n{text-align:right}tfoot td{font-weight:700}@media print{body{margin:0}}</style></head>
<body><h1>Invoice {{.Number}}</h1>
<p>Period {{date .Start}} – {{date .End}}<br>Issued {{date .FinalizedAt}}, due {{date .DueAt}}<br>Status: <strong>{{.Status}}</strong></p>
<table><thead><tr><th>Item</th><th class="n">Quantity</th><th class="n">Amount</th></tr></thead><tbody>
{{range .Lines}}<tr><td>{{.Description}}</td><td class="n">{{.Quantity}} {{.Unit}}</td><td class="n">{{money .AmountCents $.Currency}}</td></tr>{{end}}
</tbody><tfoot><tr><td colspan="2">Total</td><td class="n" data-testid="invoice-total">{{money .TotalCents .Currency}}</td></tr></tfoot></table>
</body></html>`))

func (a *API) printInvoice(w http.ResponseWriter, r *http.Request) {
	inv, err := a.billing.Invoice(r.Context(), PrincipalFrom(r.Context()).OrgID, chi.URLParam(r, "invoice_id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := invoiceHTML.Execute(w, inv); err != nil {
		a.log.Warn("render invoice", "error", err)
	}
}
