// Package gateway is the data plane's MQTT front end: mochi-mqtt with
// Aerie's hooks and listeners (TCP and WebSocket at /mqtt, with TLS).
//
// Where things are: the tenant hook (tenant.go) with device connect and
// authentication (connect.go), topic namespacing (mount.go), access
// control (acl.go, and authz.go for live connections); publish admission
// for every publish path (admit.go; HTTP publish in publish.go); quotas
// (quotas.go, packetsize.go); what the store is told (retention.go,
// topicpolicy.go); metrics and usage (metrics.go).
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/sessions"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/safelog"
)

// Options configure a gateway.
type Options struct {
	// MQTTAddr is the TCP listen address (":1883"); empty disables it.
	MQTTAddr string
	// WSAddr is the WebSocket listen address (":8083"); empty disables it.
	WSAddr string
	// TLSAddr (MQTT over TLS, ":8883") and WSSAddr (secure WebSocket,
	// ":8084") serve with TLS; both need TLS. Empty disables them.
	TLSAddr, WSSAddr string
	TLS              *tls.Config
	// ProxyProtocol names the listeners ("mqtt", "mqtts", "ws", "wss")
	// behind a load balancer that sends a PROXY protocol v1/v2 header.
	ProxyProtocol map[string]bool
	// ConnectTimeout closes sockets that send no CONNECT in time. Default 10 s.
	ConnectTimeout time.Duration
	// MinKeepalive and MaxKeepalive bound the keepalive of MQTT 5 devices
	// (told with Server Keep Alive; 0, "no keepalive", becomes the maximum,
	// so a dead peer is always noticed). Defaults 5 s and 20 min. MQTT 3.1.1
	// has no way to tell the device, so its keepalive is kept as asked.
	MinKeepalive, MaxKeepalive time.Duration
	// Log receives the node's lines, with secrets and payloads redacted and
	// each client's lines rate-limited (see LogLimit).
	Log *slog.Logger
	// LogLimit bounds the lines each client causes: by default the first 5
	// per minute, then one summary line with the count of the others.
	LogLimit safelog.LimitOptions
	// Config is the pushed configuration devices are checked against; nil
	// refuses every device (secure by default).
	Config *configsync.State
	// DefaultInstance serves devices that name no instance (no host name,
	// no "@<instance>" in the username); empty refuses them.
	DefaultInstance string
	// BaseDomain: a device connecting to "<instance>.<BaseDomain>" (TLS SNI,
	// WebSocket Host) names that instance.
	BaseDomain string
	// MaxConnectBytes bounds what a connection may send before it is
	// authenticated: its CONNECT (a larger one closes the socket unread)
	// and, on the WebSocket listeners, the HTTP upgrade request and each
	// WebSocket message. Default DefaultMaxConnectBytes (64 KiB).
	MaxConnectBytes int
	// Store, when set, keeps QoS≥1 messages, retained messages and
	// persistent sessions (see dataplane/sessions), applies retention (its
	// own Options.RetentionInterval) and owns the retained-message quota;
	// the gateway tells it of quota changes. The caller closes it after
	// Close. Without a Store (tests), retained messages live in mochi's
	// memory only and max_retained_messages is not counted.
	Store store.Backend
}

// Gateway is a running MQTT front end.
type Gateway struct {
	srv     *mqtt.Server
	tenant  *tenantHook
	metrics *Metrics
	log     *slog.Logger
	tcp     *tcpListener
	ws      *wsListener
	tls     *tcpListener
	wss     *wsListener
	ready   atomic.Bool
	store   store.Backend
	// topics is the store's topic queues and group cursors, when the
	// backend has them (store.TopicLog; nil otherwise).
	topics store.TopicLog

	topicsMu sync.Mutex // serialises syncTopics
	stopCell func()     // ends the cell load loop (cellquota.go)
}

// New binds the listeners (so a port in use fails here) without serving.
func New(o Options) (*Gateway, error) {
	o = withDefaults(o)
	if st, ok := o.Store.(*store.Store); ok && st == nil {
		o.Store = nil // a nil *store.Store means "no store", not a store
	}
	srv := newServer(o)
	g := &Gateway{srv: srv, log: o.Log}
	g.tenant = newTenantHook(srv, o.Config, o.DefaultInstance, o.BaseDomain, o.Log)
	g.tenant.minKeepalive, g.tenant.maxKeepalive = uint16(min(o.MinKeepalive/time.Second, 65535)), uint16(min(o.MaxKeepalive/time.Second, 65535))
	g.metrics = newMetrics(g.retainedByInstance)
	g.tenant.metrics = g.metrics
	if o.Config != nil {
		g.metrics.placed = placedInstances(o.Config)
	}
	if err := g.addHooks(); err != nil {
		return nil, err
	}
	if o.Store != nil {
		if err := g.addStore(o); err != nil {
			return nil, err
		}
	}
	if err := g.addListeners(o); err != nil {
		g.closeListeners()
		return nil, err
	}
	return g, nil
}

// withDefaults fills in the documented defaults and wraps the log.
func withDefaults(o Options) Options {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.MinKeepalive <= 0 {
		o.MinKeepalive = 5 * time.Second
	}
	if o.MaxKeepalive <= 0 {
		o.MaxKeepalive = 20 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Log = slog.New(nodeLogHandler(o.Log.Handler(), o.LogLimit))
	return o
}

// newServer is mochi with the node's capabilities and buffer sizes.
func newServer(o Options) *mqtt.Server {
	caps := mqtt.NewDefaultServerCapabilities()
	// mochi's default (8192 pending writes per client) costs ~90 KiB per idle
	// connection; 128 is ample for a client within its receive maximum.
	caps.MaximumClientWritesPending = 128
	// Before authentication a connection may cost at most its CONNECT;
	// afterwards packetSizeHook bounds its packets by its instance's quota.
	caps.MaximumConnectPacketSize = maxConnectBytes(o)
	// Acknowledgements carry their own reason and properties only, never the
	// PUBLISH's (paho's Python client rejects a PUBACK with them) [MQTT-3.4.2-1].
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	// Topic aliases a client may set (announced in CONNACK): each holds a
	// topic in memory for the connection's life, so the number is bounded.
	caps.TopicAliasMaximum = 64
	return mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetWriteBufferSize: 2048,
		ClientNetReadBufferSize:  1024, // per idle connection; larger payloads are read straight through
		Logger:                   slog.New(quietMochi{o.Log.Handler()}).With("component", "mqtt"),
	})
}

// placedInstances lists the instances of the pushed config with their org
// (the metrics keep only their series).
func placedInstances(st *configsync.State) func() map[string]string {
	return func() map[string]string {
		out := map[string]string{}
		for _, id := range st.InstanceIDs() {
			if in, ok := st.Instance(id); ok {
				out[id] = in.OrgID
			}
		}
		return out
	}
}

// addHooks registers the node's own hooks, in the order mochi runs them.
func (g *Gateway) addHooks() error {
	hooks := []struct {
		name string
		hook mqtt.Hook
	}{
		{"tenant", g.tenant},
		{"authz", newAuthzHook(g.tenant)},
		{"packet size", newPacketSizeHook(g.tenant)},
		{"metrics", &metricsHook{m: g.metrics, tenant: g.tenant}},
		{"refusal log", &refusalLog{tenant: g.tenant, log: g.log}},
	}
	for _, h := range hooks {
		if err := g.srv.AddHook(h.hook, nil); err != nil {
			return fmt.Errorf("add %s hook: %w", h.name, err)
		}
	}
	return nil
}

// addStore wires the message store: the sessions hook (durable QoS ≥ 1,
// persistent sessions, retained messages), the store's limits and topic
// queues kept in step with the config, and its metrics.
func (g *Gateway) addStore(o Options) error {
	st := o.Store
	g.store, g.tenant.store = st, st
	g.topics, _ = st.(store.TopicLog)
	g.tenant.cell, _ = st.(store.Cell)
	if g.tenant.cell != nil {
		g.metrics.peerConns = g.tenant.peerConnections
	}
	g.metrics.reg.MustRegister(newTopicStorage(g))
	if g.tenant.state != nil {
		g.storeLimits("")
		g.tenant.state.OnChange(g.onStoreChange)
		g.tenant.state.OnChange(g.onTopicChange)
	}
	g.metrics.stored = func(id string) int64 { return st.Stats(id).StoredBytes() }
	g.metrics.topicStored = g.topicUsage
	h := sessions.New(st, g.srv, sessions.Options{InstanceOf: g.tenant.InstanceOf, Logger: o.Log,
		OnDrop: func(cl *mqtt.Client) {
			if c := g.tenant.get(cl); c != nil {
				g.metrics.dropped(c.instance, DropQueueFull)
			}
		},
		// A client's QoS≥1 publishes count as in once stored: their
		// replay (PUBACK, fan-out) may find the client gone, yet they
		// are delivered from the store.
		// The topic carries the instance's mount: the client may have
		// been forgotten already.
		OnStored: func(_ *mqtt.Client, pk packets.Packet) {
			if inst, _, ok := strings.Cut(pk.TopicName, "/"); ok {
				g.metrics.in(inst, len(pk.Payload))
			}
		},
		// The backlog quota's owner is the sessions hook; it reads the
		// quota in force at each check.
		BacklogLimit: func(cl *mqtt.Client) time.Duration {
			if c := g.tenant.get(cl); c != nil && c.lim != nil {
				return time.Duration(c.lim.quotas().MaxBacklogSeconds) * time.Second
			}
			return 0
		},
		MayReceive: g.tenant.mayReceive})
	g.tenant.replayed = h.Replayed
	if err := g.srv.AddHook(&retainedExpiry{g: g}, nil); err != nil {
		return fmt.Errorf("add retained expiry hook: %w", err)
	}
	if err := g.srv.AddHook(h, nil); err != nil {
		return fmt.Errorf("add sessions hook: %w", err)
	}
	return nil
}

// addListeners binds the configured listeners.
func (g *Gateway) addListeners(o Options) error {
	if (o.TLSAddr != "" || o.WSSAddr != "") && o.TLS == nil {
		return errors.New("TLS listeners need a TLS configuration")
	}
	if o.MQTTAddr != "" {
		g.tcp = &tcpListener{id: "tcp", addr: o.MQTTAddr, preConnect: o.ConnectTimeout, proxy: o.ProxyProtocol["mqtt"]}
		if err := g.srv.AddListener(g.tcp); err != nil {
			return fmt.Errorf("mqtt listener on %s: %w", o.MQTTAddr, err)
		}
	}
	if o.WSAddr != "" {
		g.ws = &wsListener{id: "ws", addr: o.WSAddr, path: "/mqtt", preConnect: o.ConnectTimeout, proxy: o.ProxyProtocol["ws"], maxPreAuth: maxConnectBytes(o)}
		if err := g.srv.AddListener(g.ws); err != nil {
			return fmt.Errorf("websocket listener on %s: %w", o.WSAddr, err)
		}
	}
	if o.TLSAddr != "" {
		g.tls = &tcpListener{id: "tls", addr: o.TLSAddr, tlsConfig: o.TLS, preConnect: o.ConnectTimeout, proxy: o.ProxyProtocol["mqtts"]}
		if err := g.srv.AddListener(g.tls); err != nil {
			return fmt.Errorf("mqtt tls listener on %s: %w", o.TLSAddr, err)
		}
	}
	if o.WSSAddr != "" {
		g.wss = &wsListener{id: "wss", addr: o.WSSAddr, path: "/mqtt", tlsConfig: o.TLS, preConnect: o.ConnectTimeout, proxy: o.ProxyProtocol["wss"], maxPreAuth: maxConnectBytes(o)}
		if err := g.srv.AddListener(g.wss); err != nil {
			return fmt.Errorf("secure websocket listener on %s: %w", o.WSSAddr, err)
		}
	}
	return nil
}

func (g *Gateway) closeListeners() {
	for _, l := range []*tcpListener{g.tcp, g.tls} {
		if l != nil && l.ln != nil {
			l.ln.Close()
		}
	}
	for _, l := range []*wsListener{g.ws, g.wss} {
		if l != nil && l.ln != nil {
			l.ln.Close()
		}
	}
}

// Start serves the listeners in the background.
func (g *Gateway) Start() error {
	if err := g.srv.Serve(); err != nil {
		return fmt.Errorf("start mqtt server: %w", err)
	}
	g.ready.Store(true)
	g.syncTopics(context.Background())
	if g.tenant.cell != nil {
		ctx, cancel := context.WithCancel(context.Background())
		g.stopCell = cancel
		go g.tenant.cellLoad(ctx)
	}
	return nil
}

// Ready reports whether the listeners are serving.
func (g *Gateway) Ready() error {
	if !g.ready.Load() {
		return errors.New("mqtt listeners not serving")
	}
	return nil
}

// MQTTAddr is the bound TCP address ("" when disabled).
func (g *Gateway) MQTTAddr() string {
	if g.tcp == nil {
		return ""
	}
	return g.tcp.Address()
}

// WSAddr is the bound WebSocket address ("" when disabled).
func (g *Gateway) WSAddr() string {
	if g.ws == nil {
		return ""
	}
	return g.ws.Address()
}

// TLSAddr is the bound MQTT-over-TLS address ("" when disabled).
func (g *Gateway) TLSAddr() string {
	if g.tls == nil {
		return ""
	}
	return g.tls.Address()
}

// WSSAddr is the bound secure WebSocket address ("" when disabled).
func (g *Gateway) WSSAddr() string {
	if g.wss == nil {
		return ""
	}
	return g.wss.Address()
}

// Close stops accepting, disconnects every client and stops the server.
func (g *Gateway) Close() error {
	g.ready.Store(false)
	if g.stopCell != nil {
		g.stopCell()
	}
	return g.srv.Close()
}

// Metrics is the gateway's per-instance traffic accounting: Handler serves
// /metrics, DrainUsage feeds the usage reports.
func (g *Gateway) Metrics() *Metrics { return g.metrics }

// retainedByInstance counts retained messages by instance: the store's
// count when there is a store, else mochi's retained index by mount.
func (g *Gateway) retainedByInstance() map[string]int64 {
	out := map[string]int64{}
	if g.store != nil {
		for _, id := range g.store.RetainedInstances() {
			out[id] = int64(g.store.Stats(id).RetainedMessages)
		}
		return out
	}
	for topic := range g.srv.Topics.Retained.GetAll() {
		if inst, _, ok := strings.Cut(topic, "/"); ok && !strings.HasPrefix(inst, "$") {
			out[inst]++
		}
	}
	return out
}
