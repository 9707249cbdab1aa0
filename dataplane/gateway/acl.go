package gateway

// Access control: device token scopes and the instance's ACL rules, with
// ${username} and ${clientid} placeholders. decide is the one evaluation;
// publishes ask it through admit (admit.go), subscriptions and deliveries
// through OnACLCheck and the delivery cache (authz.go).

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/aeriemq/aerie/dataplane/config"
)

// OnACLCheck decides subscriptions (a filter) and deliveries (a topic).
// Publishing is decided in OnPublish (admit.go), which can answer with a
// reason code.
func (h *tenantHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	c := h.get(cl)
	if c == nil {
		return false
	}
	if write {
		return true
	}
	_, inner, shared := mqtttopic.SplitShared(topic)
	t, ok := mqtttopic.Unmount(c.mount, inner)
	if !ok {
		return false
	}
	return h.mayRead(c, t, shared)
}

// allowed evaluates the device token's scopes (if any) and the instance's
// ACL rules for s, a topic, or a filter when isFilter (decide).
func (h *tenantHook) allowed(c *conn, action, s string, isFilter bool) bool {
	return h.decide(c, action, aclQuery{s: s, isFilter: isFilter})
}

// aclQuery is what an ACL decision is about: a topic, a filter, or every
// topic at once (the delivery cache's question, authz.go).
type aclQuery struct {
	s          string
	isFilter   bool
	everything bool
}

// grantedBy reports whether an allow rule (or token scope) with filter f
// grants the query: f covers it; only "#" covers everything.
func (q aclQuery) grantedBy(f string) bool {
	if q.everything {
		return f == "#"
	}
	return mqtttopic.Covers(f, q.s)
}

// deniedBy reports whether a deny rule with filter f refuses the query. A
// filter is refused when the rule covers it: a deny that only overlaps it
// (deny "a/secret", filter "a/+") leaves it granted, and the denied topics
// are held back at delivery (authz.go). A topic is refused when the rule
// matches it; everything by any deny rule that applies.
func (q aclQuery) deniedBy(f string) bool {
	switch {
	case q.everything:
		return true
	case q.isFilter:
		return mqtttopic.Covers(f, q.s)
	}
	return mqtttopic.MatchLevels(f, q.s)
}

// decide is the one evaluation of a connection's rules for action: the
// device token's scopes (if any) must grant the query, then among the
// instance's ACL rules that apply to the connection deny wins and
// something must allow.
func (h *tenantHook) decide(c *conn, action string, q aclQuery) bool {
	if c.resources != nil && !c.tokenGrants(action, q) {
		return false
	}
	allow := false
	for _, r := range h.state.ACL(c.instance) {
		if r.CredentialID != "" && r.CredentialID != c.credID {
			continue
		}
		if r.Action != config.ActionAll && r.Action != action {
			continue
		}
		f, good := c.expand(r.Filter)
		if r.Effect == config.EffectDeny {
			// A placeholder that cannot be expanded safely denies everything.
			if !good || q.deniedBy(f) {
				return false
			}
			continue
		}
		if good && q.grantedBy(f) {
			allow = true
		}
	}
	return allow
}

// tokenGrants reports whether one of the device token's scopes grants
// action on the query.
func (c *conn) tokenGrants(action string, q aclQuery) bool {
	for _, r := range c.resources {
		if !containsString(r.Actions, action) {
			continue
		}
		if f, good := c.expand(r.Filter); good && q.grantedBy(f) {
			return true
		}
	}
	return false
}

// expand substitutes ${username} and ${clientid}; a value that would add
// levels or wildcards makes the rule unusable (good false), so a device
// cannot widen a rule by choosing its client ID.
func (c *conn) expand(filter string) (string, bool) {
	if !strings.Contains(filter, "${") {
		return filter, true
	}
	unsafe := func(v string) bool { return v == "" || strings.ContainsAny(v, "/+#\x00") }
	if strings.Contains(filter, "${username}") && unsafe(c.username) || strings.Contains(filter, "${clientid}") && unsafe(c.clientID) {
		return "", false
	}
	f := strings.ReplaceAll(filter, "${username}", c.username)
	f = strings.ReplaceAll(f, "${clientid}", c.clientID)
	return f, true
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
