package usagereport

import "github.com/aeriemq/aerie/dataplane/config"

// Merge is a Source summing several sources' usage by instance (the
// gateway's and the forwarding rules'): counters add up, gauges take the
// largest value reported.
type Merge []Source

// DrainUsage implements Source.
func (m Merge) DrainUsage() []config.InstanceUsage {
	by := map[string]*config.InstanceUsage{}
	var order []string
	for _, src := range m {
		for _, u := range src.DrainUsage() {
			cur, ok := by[u.InstanceID]
			if !ok {
				cp := u
				by[u.InstanceID] = &cp
				order = append(order, u.InstanceID)
				continue
			}
			add(cur, u)
		}
	}
	out := make([]config.InstanceUsage, 0, len(order))
	for _, id := range order {
		out = append(out, *by[id])
	}
	return out
}

func add(dst *config.InstanceUsage, u config.InstanceUsage) {
	dst.Connects += u.Connects
	dst.AuthFailures += u.AuthFailures
	dst.MessagesIn += u.MessagesIn
	dst.MessagesOut += u.MessagesOut
	dst.BytesIn += u.BytesIn
	dst.BytesOut += u.BytesOut
	dst.MessageUnitsIn += u.MessageUnitsIn
	dst.MessageUnitsOut += u.MessageUnitsOut
	dst.ConnectionSeconds += u.ConnectionSeconds
	dst.MessagesForwarded += u.MessagesForwarded
	for k, v := range u.Drops {
		if dst.Drops == nil {
			dst.Drops = map[string]int64{}
		}
		dst.Drops[k] += v
	}
	dst.Connections = max(dst.Connections, u.Connections)
	dst.Subscriptions = max(dst.Subscriptions, u.Subscriptions)
	dst.Retained = max(dst.Retained, u.Retained)
	dst.StoredBytes = max(dst.StoredBytes, u.StoredBytes)
	for k, v := range u.TopicStoredBytes { // gauges: one source reports each topic
		if dst.TopicStoredBytes == nil {
			dst.TopicStoredBytes = map[string]int64{}
		}
		dst.TopicStoredBytes[k] = max(dst.TopicStoredBytes[k], v)
	}
}
