package configsync

import (
	"context"

	"github.com/aeriemq/aerie/dataplane/config"
)

// Source is where a node's configuration comes from: the control plane's
// watch API over HTTP (HTTPSource), or the control plane's publisher in the
// same process (`aerie serve`). Both speak the protocol of dataplane/config.
type Source interface {
	// Watch streams the events after since to fn, in revision order (a
	// KindSnapshot first when since is 0 or too old), until ctx ends, the
	// stream breaks, or fn returns an error; it returns that error.
	Watch(ctx context.Context, since int64, fn func(config.Event) error) error
	// Ack reports the revision the node has applied; it doubles as the
	// node's heartbeat.
	Ack(ctx context.Context, ack config.Ack) error
	// PublishResult answers a KindPublish event.
	PublishResult(ctx context.Context, res config.PublishResult) error
}
