package configsync

import (
	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/nodelink"
)

// FromLink converts an event of the node link into the data plane's model
// (dataplane/config): the one place the node side maps the link's types.
func FromLink(le nodelink.Event) config.Event {
	ev := config.Event{Revision: le.Revision, Kind: le.Kind, InstanceID: le.InstanceID, ID: le.ID, ACL: fromLinkACL(le.ACL), Strict: le.Strict}
	if le.Snapshot != nil {
		snap := config.Snapshot{Revision: le.Snapshot.Revision, NodeID: le.Snapshot.NodeID, Instances: make([]config.Instance, len(le.Snapshot.Instances))}
		for i, in := range le.Snapshot.Instances {
			snap.Instances[i] = fromLinkInstance(in)
		}
		ev.Snapshot = &snap
	}
	if le.Instance != nil {
		in := fromLinkInstance(*le.Instance)
		ev.Instance = &in
	}
	if le.Credential != nil {
		c := config.Credential(*le.Credential)
		ev.Credential = &c
	}
	if le.ACLRule != nil {
		r := config.ACLRule(*le.ACLRule)
		ev.ACLRule = &r
	}
	if le.Quotas != nil {
		q := config.Quotas(*le.Quotas)
		ev.Quotas = &q
	}
	if le.TokenKey != nil {
		k := config.TokenKey(*le.TokenKey)
		ev.TokenKey = &k
	}
	if le.RevokedToken != nil {
		r := config.RevokedToken(*le.RevokedToken)
		ev.RevokedToken = &r
	}
	if le.Rule != nil {
		r := fromLinkRule(*le.Rule)
		ev.Rule = &r
	}
	if le.Topic != nil {
		t := config.Topic(*le.Topic)
		ev.Topic = &t
	}
	return ev
}

func fromLinkInstance(in nodelink.Instance) config.Instance {
	out := config.Instance{ID: in.ID, OrgID: in.OrgID, Status: in.Status, AllowAnonymous: in.AllowAnonymous, Limited: in.Limited,
		Quotas: config.Quotas(in.Quotas), ACL: fromLinkACL(in.ACL), StrictTopics: in.StrictTopics}
	out.Credentials = convertAll(in.Credentials, func(c nodelink.Credential) config.Credential { return config.Credential(c) })
	out.TokenKeys = convertAll(in.TokenKeys, func(k nodelink.TokenKey) config.TokenKey { return config.TokenKey(k) })
	out.RevokedTokens = convertAll(in.RevokedTokens, func(r nodelink.RevokedToken) config.RevokedToken { return config.RevokedToken(r) })
	out.Topics = convertAll(in.Topics, func(t nodelink.Topic) config.Topic { return config.Topic(t) })
	out.Rules = convertAll(in.Rules, fromLinkRule)
	return out
}

func fromLinkACL(rules []nodelink.ACLRule) []config.ACLRule {
	return convertAll(rules, func(r nodelink.ACLRule) config.ACLRule { return config.ACLRule(r) })
}

// convertAll maps a slice, keeping nil as nil.
func convertAll[T, U any](in []T, f func(T) U) []U {
	if in == nil {
		return nil
	}
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

// fromLinkRule converts a forwarding rule (its sink's signing secret never
// travels with it).
func fromLinkRule(r nodelink.Rule) config.Rule {
	return config.Rule{ID: r.ID, Name: r.Name, Filter: r.Filter, Paused: r.Paused, MaxAgeSeconds: r.MaxAgeSeconds,
		Sink: config.Sink(r.Sink)}
}
