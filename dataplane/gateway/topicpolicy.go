package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// topicAllowed applies the instance's provisioned topics to a device's
// publish on topic t (unmounted): in strict mode the topic must match one
// of them; every matching topic's policy (maximum QoS, retained allowed,
// maximum payload) must allow the message. A refusal is answered like an
// ACL refusal (v5 PUBACK 0x87; otherwise acknowledged and not delivered).
func (h *tenantHook) topicAllowed(instance, t string, qos byte, retain bool, size int) bool {
	if h.state == nil {
		return true
	}
	topics, strict := h.state.Topics(instance)
	if len(topics) == 0 {
		return !strict
	}
	matched := false
	for i := range topics {
		tp := &topics[i]
		if !mqtttopic.MatchLevels(tp.Filter, t) {
			continue
		}
		matched = true
		if qos > tp.MaxQoS || retain && !tp.RetainAllowed ||
			tp.MaxPayloadBytes > 0 && size > tp.MaxPayloadBytes {
			return false
		}
	}
	return matched || !strict
}

// topicQueues are the store queues an instance's provisioned topics imply
// (stored topics carry the instance's mount, "<instance>/").
func topicQueues(instance string, ts []config.Topic) []store.TopicQueue {
	out := make([]store.TopicQueue, 0, len(ts))
	seen := map[string]int{}
	for _, t := range ts {
		q := store.TopicQueue{Filter: mqtttopic.Mount(mqtttopic.MountOf(instance), t.Filter), MaxAge: time.Duration(t.RetentionSeconds) * time.Second, MaxBytes: t.RetentionBytes}
		if i, ok := seen[q.Filter]; ok { // two topics, one filter: the longer policy
			o := &out[i]
			if o.MaxAge != 0 && (q.MaxAge == 0 || q.MaxAge > o.MaxAge) {
				o.MaxAge = q.MaxAge
			}
			if o.MaxBytes != 0 && (q.MaxBytes == 0 || q.MaxBytes > o.MaxBytes) {
				o.MaxBytes = q.MaxBytes
			}
			continue
		}
		seen[q.Filter] = len(out)
		out = append(out, q)
	}
	return out
}

// syncTopics brings the store's topic queues of the instances to the
// pushed configuration (all instances the store or the state knows when
// ids is empty).
func (g *Gateway) syncTopics(ctx context.Context, ids ...string) {
	if g.topics == nil || g.tenant.state == nil {
		return
	}
	g.topicsMu.Lock()
	defer g.topicsMu.Unlock()
	if len(ids) == 0 {
		ids = append(g.tenant.state.InstanceIDs(), g.topics.TopicInstances()...)
	}
	for _, id := range ids {
		ts, _ := g.tenant.state.Topics(id)
		if err := g.topics.SetTopics(ctx, id, withRuleQueues(topicQueues(id, ts), id, g.tenant.state.Rules(id))); err != nil && ctx.Err() == nil {
			g.log.Warn("set topic queues", "instance", id, "error", err)
		}
	}
}

// onTopicChange follows config changes that touch topics.
func (g *Gateway) onTopicChange(ch configsync.Change) {
	switch ch.Kind {
	case config.KindTopicPut, config.KindTopicDelete, config.KindInstancePut, config.KindInstanceDelete, config.KindRulePut, config.KindRuleDelete:
		go g.syncTopics(context.Background(), ch.InstanceID)
	case config.KindSnapshot:
		go g.syncTopics(context.Background())
	}
}

// topicStorage exposes aerie_topic_stored_bytes{aerie_instance, topic}: the
// log bytes of the messages readable in each provisioned topic's queue.
type topicStorage struct {
	g    *Gateway
	desc *prometheus.Desc
}

func newTopicStorage(g *Gateway) *topicStorage {
	return &topicStorage{g: g, desc: prometheus.NewDesc("aerie_topic_stored_bytes",
		"Bytes stored for a provisioned topic (its readable messages; a message in two topics counts in both).",
		[]string{"aerie_instance", "topic"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *topicStorage) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *topicStorage) Collect(ch chan<- prometheus.Metric) {
	if c.g.tenant.state == nil {
		return
	}
	for _, id := range c.g.tenant.state.InstanceIDs() {
		for _, t := range c.g.topicStored(id) {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(t.Bytes), id, t.Name)
		}
	}
}
