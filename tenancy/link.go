package tenancy

import "github.com/aeriemq/aerie/nodelink"

// What tenancy hands to the node link: its own types converted to the
// link's (the fields match one for one; the link owns their encoding).

func linkQuotas(q Quotas) *nodelink.Quotas {
	lq := nodelink.Quotas(q)
	return &lq
}

func linkACL(rules []ACLRule) []nodelink.ACLRule {
	if rules == nil {
		return nil
	}
	out := make([]nodelink.ACLRule, len(rules))
	for i, r := range rules {
		out[i] = nodelink.ACLRule(r)
	}
	return out
}

func linkACLRule(r ACLRule) *nodelink.ACLRule {
	lr := nodelink.ACLRule(r)
	return &lr
}

func linkTopic(t TopicPolicy) *nodelink.Topic {
	lt := nodelink.Topic(t)
	return &lt
}

func linkResources(rs []TokenResource) []nodelink.TokenResource {
	out := make([]nodelink.TokenResource, len(rs))
	for i, r := range rs {
		out[i] = nodelink.TokenResource(r)
	}
	return out
}
