package gateway

import (
	"context"
	"maps"

	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// Storage per provisioned topic, for /metrics (aerie_topic_stored_bytes)
// and the usage reports (config.InstanceUsage.TopicStoredBytes): the
// store's running byte count of each topic's queue, never a scan (on
// JetStream: a per-topic count from the stream's subject state, see
// jsstore's TopicStats).

// topicBytes is one provisioned topic's stored bytes.
type topicBytes struct {
	ID, Name string
	Bytes    int64
}

// topicStored lists the instance's provisioned topics with their stored
// bytes (nil for an instance without topics, or without a store).
func (g *Gateway) topicStored(instance string) []topicBytes {
	st, state := g.topics, g.tenant.state
	if st == nil || state == nil {
		return nil
	}
	ts, _ := state.Topics(instance)
	if len(ts) == 0 {
		return nil
	}
	by := map[string]int64{}
	stats, _ := st.TopicStats(context.Background(), instance) // on error: 0 until the next call
	for _, s := range stats {
		by[s.Filter] = s.Bytes
	}
	out := make([]topicBytes, len(ts))
	for i, t := range ts {
		out[i] = topicBytes{ID: t.ID, Name: t.Name, Bytes: by[mqtttopic.Mount(mqtttopic.MountOf(instance), t.Filter)]}
	}
	return out
}

// topicUsage is every placed instance's topic storage by topic ID (only
// instances with provisioned topics).
func (g *Gateway) topicUsage() map[string]map[string]int64 {
	if g.tenant.state == nil {
		return nil
	}
	out := map[string]map[string]int64{}
	for _, id := range g.tenant.state.InstanceIDs() {
		ts := g.topicStored(id)
		if len(ts) == 0 {
			continue
		}
		m := make(map[string]int64, len(ts))
		for _, t := range ts {
			m[t.ID] = t.Bytes
		}
		out[id] = m
	}
	return out
}

// topicsMoved records what the instance's topic storage is now and says
// whether it differs from the previous call's (so a report carries it
// even when the instance was otherwise quiet).
func (m *Metrics) topicsMoved(instance string, now map[string]int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastTopics == nil {
		m.lastTopics = map[string]map[string]int64{}
	}
	if maps.Equal(m.lastTopics[instance], now) {
		return false
	}
	if len(now) == 0 {
		delete(m.lastTopics, instance)
	} else {
		m.lastTopics[instance] = now
	}
	return true
}
