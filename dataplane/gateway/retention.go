package gateway

import (
	"context"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/store"
)

// RetentionInterval is how often the node applies the instances' storage
// limits to the message store.
const RetentionInterval = time.Minute

// retentionLimits are the store limits an instance's quotas imply: a
// message is kept as long as an offline session may wait for it (the
// session expiry cap), and the retained-message count is the quota's.
func retentionLimits(q config.Quotas) store.Limits {
	return store.Limits{MaxAge: time.Duration(q.MaxSessionExpirySeconds) * time.Second, MaxRetained: q.MaxRetainedMessages}
}

// EnforceRetention brings the store's per-instance limits to the pushed
// quotas and drops what is beyond them (messages older than an instance's
// session expiry cap): the commit log does not grow without bound.
func (g *Gateway) EnforceRetention(ctx context.Context, now time.Time) error {
	if g.store == nil || g.tenant.state == nil {
		return nil
	}
	for _, id := range g.tenant.state.InstanceIDs() {
		if inst, ok := g.tenant.state.Instance(id); ok {
			g.store.SetLimits(id, retentionLimits(inst.Quotas))
		}
	}
	g.syncTopics(ctx)
	return g.store.EnforceRetention(ctx, now)
}

func (g *Gateway) retentionLoop(ctx context.Context) {
	every := g.retentionEvery
	if every <= 0 {
		every = RetentionInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := g.EnforceRetention(ctx, time.Now()); err != nil && ctx.Err() == nil {
			g.log.Warn("enforce retention", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
