package gateway

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/store"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// transports names the listeners as the clients list shows them.
var transports = map[string]string{"tcp": "mqtt", "tls": "mqtts", "ws": "ws", "wss": "wss"}

// Clients lists the instance's connected clients on this node, sorted by
// client ID, with their topic filters as the device wrote them.
func (g *Gateway) Clients(instance string) []config.ClientInfo {
	h := g.tenant
	h.mu.RLock()
	type pair struct {
		cl *mqtt.Client
		c  *conn
	}
	var list []pair
	for cl, c := range h.conns {
		if c.instance == instance && c.established.Load() {
			list = append(list, pair{cl, c})
		}
	}
	h.mu.RUnlock()
	out := make([]config.ClientInfo, 0, len(list))
	for _, p := range list {
		cl, c := p.cl, p.c
		if cl.Closed() {
			continue
		}
		subs := []string{}
		for f := range cl.State.Subscriptions.GetAll() {
			subs = append(subs, strings.TrimPrefix(f, c.mount))
		}
		sort.Strings(subs)
		tr := transports[cl.Net.Listener]
		if tr == "" {
			tr = cl.Net.Listener
		}
		out = append(out, config.ClientInfo{
			ClientID: c.clientID, Username: c.username, ProtocolVersion: int(cl.Properties.ProtocolVersion),
			Transport: tr, RemoteAddr: cl.Net.Remote, ConnectedAt: time.Unix(0, c.since.Load()).UTC(),
			Keepalive: int(cl.State.Keepalive), Subscriptions: subs, Inflight: cl.State.Inflight.Len(),
			MessagesIn: c.msgsIn.Load(), MessagesOut: c.msgsOut.Load(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClientID < out[j].ClientID })
	return out
}

// Disconnect closes the instance's client with this client ID (MQTT 5
// clients get DISCONNECT "administrative action"); false if none is
// connected here.
func (g *Gateway) Disconnect(instance, clientID string) bool {
	h := g.tenant
	h.mu.RLock()
	var found *mqtt.Client
	for cl, c := range h.conns {
		if c.instance == instance && c.clientID == clientID {
			found = cl
			break
		}
	}
	h.mu.RUnlock()
	if found == nil {
		return false
	}
	if found.Properties.ProtocolVersion == 5 {
		_ = h.srv.DisconnectClient(found, packets.ErrAdministrativeAction)
	} else {
		found.Stop(packets.ErrAdministrativeAction)
	}
	return true
}

// PendingUsage is the instance's usage counted on this node since the last
// usage report (not yet sent to the control plane), with its gauges now:
// added to the reported series, it makes the console's "now" numbers live
// without changing what is billed (the reports stay the record).
func (g *Gateway) PendingUsage(instance string) config.InstanceUsage {
	m := g.metrics
	m.mu.RLock()
	c := m.inst[instance]
	m.mu.RUnlock()
	u := config.InstanceUsage{InstanceID: instance}
	if c == nil {
		return u
	}
	u.Connects, u.AuthFailures = c.connects.Load(), c.authFailures.Load()
	u.MessagesIn, u.MessagesOut = c.msgsIn.Load(), c.msgsOut.Load()
	u.BytesIn, u.BytesOut = c.bytesIn.Load(), c.bytesOut.Load()
	u.Connections, u.Subscriptions = c.connections.Load(), c.subscriptions.Load()
	c.drops.Range(func(k, v any) bool {
		if n := v.(*atomic.Int64).Load(); n > 0 {
			if u.Drops == nil {
				u.Drops = map[string]int64{}
			}
			u.Drops[k.(string)] = n
		}
		return true
	})
	return u
}

// ErrSessionOnline: a connected session cannot be discarded (disconnect it
// first).
var ErrSessionOnline = errors.New("the session is connected; disconnect the client first")

// Sessions lists the instance's persistent sessions on this node with
// their backlog (nil without a store).
func (g *Gateway) Sessions(ctx context.Context, instance string) ([]config.SessionInfo, error) {
	if g.store == nil {
		return nil, nil
	}
	list, err := g.store.Sessions(ctx, instance, config.SessionBacklogCap)
	if err != nil {
		return nil, err
	}
	out := make([]config.SessionInfo, 0, len(list))
	for _, s := range list {
		info := config.SessionInfo{ClientID: strings.TrimPrefix(s.ClientID, instance+"/"), Online: s.Online,
			ExpirySeconds: int64(s.Expiry / time.Second), Subscriptions: []string{}, Backlog: s.Backlog, BacklogCapped: s.Capped}
		if s.Expiry == store.NeverExpire {
			info.ExpirySeconds = -1
		}
		for _, f := range s.Subscriptions {
			info.Subscriptions = append(info.Subscriptions, strings.TrimPrefix(f, instance+"/"))
		}
		if !s.DisconnectedAt.IsZero() {
			t := s.DisconnectedAt.UTC()
			info.DisconnectedAt = &t
		}
		if !s.Oldest.IsZero() {
			t := s.Oldest.UTC()
			info.OldestAt = &t
		}
		out = append(out, info)
	}
	return out, nil
}

// DiscardSession deletes an offline persistent session and its backlog
// position; false if there is none.
func (g *Gateway) DiscardSession(ctx context.Context, instance, clientID string) (bool, error) {
	if g.store == nil {
		return false, nil
	}
	sess, err := g.store.LoadSession(ctx, instance, instance+"/"+clientID)
	if errors.Is(err, store.ErrNoSession) || (err == nil && sess == nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load session: %w", err)
	}
	if sess.DisconnectedAt.IsZero() {
		return false, ErrSessionOnline
	}
	if err := g.store.DeleteSession(ctx, instance, instance+"/"+clientID); err != nil {
		return false, fmt.Errorf("discard session: %w", err)
	}
	return true, nil
}
