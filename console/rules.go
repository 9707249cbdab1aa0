package console

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/aeriemq/aerie/nodelink"
	"github.com/aeriemq/aerie/tenancy"
)

// Forwarding rules: the rules are the control plane's (tenancy); their
// delivery state and dead letters are read from the instance's node
// (nodelink.Nodes over the node API), like the API does.

// RuleRow is one rule with its live status (Status.State "" when the node
// could not be asked).
type RuleRow struct {
	Rule   tenancy.Rule
	Status nodelink.RuleStatus
}

// RulesView is an instance's Rules tab.
type RulesView struct {
	Inst tenancy.Instance
	Rows []RuleRow
	Form Form
	// Secret is the signing secret of the rule just created (this answer
	// only); SecretRule names it.
	Secret, SecretRule string
	Err                string // the node could not be asked
}

// DeadLettersView is a rule's dead-letter list.
type DeadLettersView struct {
	Inst  tenancy.Instance
	Rule  tenancy.Rule
	Items []nodelink.DeadLetter
	More  bool
	Err   string
}

// ruleRoutes registers the Rules tab under /instances/{inst}.
func (c *Console) ruleRoutes(r chi.Router) {
	r.Get("/rules", c.rulesPage)
	r.Post("/rules", c.createRule)
	r.Post("/rules/{rule}/pause", c.pauseRule)
	r.Post("/rules/{rule}/resume", c.resumeRule)
	r.Post("/rules/{rule}/delete", c.deleteRule)
	r.Get("/rules/{rule}/dead-letters", c.deadLettersPage)
	r.Post("/rules/{rule}/dead-letters/replay", c.replayDeadLetters)
	r.Post("/rules/{rule}/dead-letters/purge", c.purgeDeadLetters)
}

func (c *Console) rulesPage(w http.ResponseWriter, r *http.Request) {
	c.showRules(w, r, http.StatusOK, RulesView{Form: Form{Values: map[string]string{"mode": nodelink.ModeStructured, "max_age_seconds": "86400"}}})
}

func (c *Console) showRules(w http.ResponseWriter, r *http.Request, status int, v RulesView) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	v.Inst = in
	rules, _, err := c.svc.ListRules(r.Context(), in.OrgID, in.ID, tenancy.Page{Limit: 200})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var sts map[string]nodelink.RuleStatus
	if len(rules) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		sts, err = c.rules.RuleStatuses(ctx, in.NodeID, in.ID)
		cancel()
		if err != nil {
			v.Err = "Delivery status is unavailable right now: the instance's node could not be asked."
		}
	}
	for _, ru := range rules {
		st, ok := sts[ru.ID]
		if !ok && err == nil {
			st = nodelink.RuleStatus{RuleID: ru.ID, State: nodelink.RuleStatePending}
		}
		v.Rows = append(v.Rows, RuleRow{Rule: ru, Status: st})
	}
	p := c.page(w, r, "Rules · "+in.Name, "instances")
	c.render(w, r, status, RulesPage(p, v))
}

func (c *Console) createRule(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	f := formOf(r, "name", "filter", "url", "mode", "max_age_seconds")
	age, err := strconv.ParseInt(f.Get("max_age_seconds"), 10, 64)
	if err != nil {
		f.Errors["max_age_seconds"] = fmt.Sprintf("must be a number of seconds, 1 to %d", tenancy.MaxRuleMaxAge)
		c.showRules(w, r, http.StatusUnprocessableEntity, RulesView{Form: f})
		return
	}
	rule := nodelink.Rule{Name: f.Get("name"), Filter: f.Get("filter"), MaxAgeSeconds: age,
		Sink: nodelink.Sink{Type: nodelink.SinkWebhook, URL: f.Get("url"), Mode: f.Get("mode")}}
	out, secret, err := c.svc.CreateRule(r.Context(), actor(r), o.ID, instID, rule)
	if err != nil {
		if !f.fieldErrors(err, map[string]string{"sink.url": "url", "sink.mode": "mode", "sink.type": "url"}) {
			c.fail(w, r, err)
			return
		}
		c.showRules(w, r, http.StatusUnprocessableEntity, RulesView{Form: f})
		return
	}
	// The secret is in this response only (never in a cookie or a redirect).
	c.showRules(w, r, http.StatusCreated, RulesView{Form: Form{Values: map[string]string{"mode": nodelink.ModeStructured, "max_age_seconds": "86400"}},
		Secret: secret, SecretRule: out.Name})
}

func (c *Console) setRulePaused(w http.ResponseWriter, r *http.Request, paused bool) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	action, msg := "rule.resume", "resumed: delivery continues from where it stopped."
	if paused {
		action, msg = "rule.pause", "paused: messages wait in the store."
	}
	ru, err := c.svc.UpdateRule(r.Context(), actor(r), o.ID, instID, chi.URLParam(r, "rule"), tenancy.RulePatch{Paused: &paused}, action)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Rule “"+ru.Name+"” "+msg, c.secure)
	seeOther(w, r, c.instancePath(o.ID, instID, "/rules"))
}

func (c *Console) pauseRule(w http.ResponseWriter, r *http.Request)  { c.setRulePaused(w, r, true) }
func (c *Console) resumeRule(w http.ResponseWriter, r *http.Request) { c.setRulePaused(w, r, false) }

func (c *Console) deleteRule(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	o, instID := orgFrom(r.Context()), chi.URLParam(r, "inst")
	if err := c.svc.DeleteRule(r.Context(), actor(r), o.ID, instID, chi.URLParam(r, "rule")); err != nil {
		c.fail(w, r, err)
		return
	}
	setFlash(w, "Rule deleted, with its dead letters.", c.secure)
	seeOther(w, r, c.instancePath(o.ID, instID, "/rules"))
}

// loadRule answers the {rule} of the URL with its node (404 for another
// org's).
func (c *Console) loadRule(w http.ResponseWriter, r *http.Request) (tenancy.RuleTarget, bool) {
	tgt, err := c.svc.ResolveRule(r.Context(), orgFrom(r.Context()).ID, chi.URLParam(r, "inst"), chi.URLParam(r, "rule"))
	if err != nil {
		c.fail(w, r, err)
		return tenancy.RuleTarget{}, false
	}
	return tgt, true
}

func (c *Console) deadLettersPage(w http.ResponseWriter, r *http.Request) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	tgt, ok := c.loadRule(w, r)
	if !ok {
		return
	}
	v := DeadLettersView{Inst: in, Rule: tgt.Rule}
	page, err := c.rules.DeadLetters(r.Context(), tgt.NodeID, in.ID, tgt.Rule.ID, 0, 100)
	if err != nil {
		v.Err = "The dead letters are unavailable right now: the instance's node could not be asked."
	}
	v.Items, v.More = page.Items, page.Next > 0
	p := c.page(w, r, "Dead letters · "+tgt.Rule.Name, "instances")
	c.render(w, r, http.StatusOK, DeadLettersPage(p, v))
}

// deadLetterOp replays or purges a rule's dead letters on its node.
func (c *Console) deadLetterOp(w http.ResponseWriter, r *http.Request, replay bool) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	tgt, ok := c.loadRule(w, r)
	if !ok {
		return
	}
	o := orgFrom(r.Context())
	op, action := c.rules.PurgeDeadLetters, "rule.purge"
	if replay {
		op, action = c.rules.ReplayDeadLetters, "rule.replay"
	}
	res, err := op(r.Context(), tgt.NodeID, tgt.Rule.InstanceID, tgt.Rule.ID)
	if err != nil {
		c.errorPage(w, r, http.StatusServiceUnavailable, "The instance's node could not be reached; try again later.")
		return
	}
	if err := c.svc.RecordAudit(r.Context(), actor(r), o.ID, action, tgt.Rule.ID); err != nil {
		c.fail(w, r, err)
		return
	}
	if replay {
		setFlash(w, plural(int(res.Count), "dead letter", "dead letters")+" queued for delivery.", c.secure)
	} else {
		setFlash(w, plural(int(res.Count), "dead letter", "dead letters")+" removed.", c.secure)
	}
	seeOther(w, r, c.instancePath(o.ID, tgt.Rule.InstanceID, "/rules/"+tgt.Rule.ID+"/dead-letters"))
}

func (c *Console) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	c.deadLetterOp(w, r, true)
}
func (c *Console) purgeDeadLetters(w http.ResponseWriter, r *http.Request) {
	c.deadLetterOp(w, r, false)
}

// lagText shows a rule's lag.
func lagText(s nodelink.RuleStatus) string {
	if s.LagMessages == 0 {
		return "none"
	}
	n := strconv.Itoa(s.LagMessages)
	if s.LagCapped {
		n += "+"
	}
	return n + " messages, oldest " + (time.Duration(s.LagSeconds * float64(time.Second))).Round(time.Second).String()
}

func ruleStateBadge(state string) string {
	switch state {
	case nodelink.RuleStateActive:
		return "running"
	case nodelink.RuleStatePaused, nodelink.RuleStatePending:
		return "provisioning"
	}
	return "suspended"
}
