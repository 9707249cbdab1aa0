package configsync

import (
	"fmt"

	"github.com/aeriemq/aerie/dataplane/config"
)

// applyRule applies a rule.put or rule.delete to an instance's metadata,
// where its forwarding rules live (replaced, never modified in place).
func applyRule(meta *config.Instance, ev config.Event) error {
	var rs []config.Rule
	switch ev.Kind {
	case config.KindRulePut:
		if ev.Rule == nil || ev.Rule.ID == "" || ev.Rule.Filter == "" || ev.Rule.Sink.Type == "" {
			return fmt.Errorf("%w: rule.put needs a rule with an id, a filter and a sink", ErrBadEvent)
		}
		rs = make([]config.Rule, 0, len(meta.Rules)+1)
		for _, r := range meta.Rules {
			if r.ID != ev.Rule.ID {
				rs = append(rs, r)
			}
		}
		rs = append(rs, *ev.Rule)
	case config.KindRuleDelete:
		rs = make([]config.Rule, 0, len(meta.Rules))
		for _, r := range meta.Rules {
			if r.ID != ev.ID {
				rs = append(rs, r)
			}
		}
	}
	meta.Rules = rs
	return nil
}

// Rules returns the instance's forwarding rules (shared; do not modify).
func (s *State) Rules(instanceID string) []config.Rule {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if in, ok := s.instances[instanceID]; ok {
		return in.meta.Rules
	}
	return nil
}

// definesQueues reports whether an event changes the store queues the node
// keeps (topics, forwarding rules): such changes are saved to disk at once,
// so a node restarted from disk does not drop a queue the control plane
// has already given it (and the messages indexed in it).
func definesQueues(kind string) bool {
	switch kind {
	case config.KindTopicPut, config.KindTopicDelete, config.KindRulePut, config.KindRuleDelete:
		return true
	}
	return false
}
