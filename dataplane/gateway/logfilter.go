package gateway

import (
	"context"
	"log/slog"
	"strings"
)

// quietMochi drops mochi's per-client warnings that devices trigger at will
// (keepalive 0 is legal MQTT; one line per connection would flood the log).
type quietMochi struct{ slog.Handler }

func (q quietMochi) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "client keepalive is below minimum") {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietMochi) WithAttrs(a []slog.Attr) slog.Handler { return quietMochi{q.Handler.WithAttrs(a)} }
func (q quietMochi) WithGroup(n string) slog.Handler      { return quietMochi{q.Handler.WithGroup(n)} }
