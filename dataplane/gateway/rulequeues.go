package gateway

import (
	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/store"
)

// withRuleQueues adds to an instance's topic queues the queue of each of
// its forwarding rules' filters (kept under the instance's retention), so
// a wildcard rule's queue is indexed from the moment the rule reaches the
// node (dataplane/forward reads it).
func withRuleQueues(qs []store.TopicQueue, instance string, rules []config.Rule) []store.TopicQueue {
	have := make(map[string]bool, len(qs)+len(rules))
	for _, q := range qs {
		have[q.Filter] = true
	}
	for _, r := range rules {
		if f := instance + "/" + r.Filter; !have[f] {
			have[f] = true
			qs = append(qs, store.TopicQueue{Filter: f})
		}
	}
	return qs
}
