package gateway

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
)

// conn is what the tenant hook knows about one connected device.
type conn struct {
	instance  string
	mount     string // "<instance>/"
	username  string // as the device knows it (without "@<instance>")
	clientID  string // as the device knows it
	credID    string
	jti       string
	resources []config.TokenResource // nil unless authenticated by a device token
	maxLevels int

	established atomic.Bool  // counted as a connection
	subs        atomic.Int64 // accepted subscriptions
	since       atomic.Int64 // session established (unix ns), for the clients list
	msgsIn      atomic.Int64 // publishes accepted from the client
	msgsOut     atomic.Int64 // publishes sent to the client

	lim     *instanceLimits // the instance's quotas on this node
	cl      *clientLimits   // this connection's own quota state
	counted atomic.Bool     // counted in lim.conns

	az       connAuthz // cached delivery decisions (authz.go)
	tokenExp int64     // device token's exp (unix seconds); 0 without a token
}

// levels is the topic-level quota now in force for the connection.
func (c *conn) levels() int {
	if c.cl != nil {
		return int(c.cl.maxLevels.Load())
	}
	return c.maxLevels
}

// tenantHook authenticates devices from the pushed config, keeps every
// instance in its own topic namespace and client-ID space, and enforces
// ACL rules, device-token scopes and quotas. Its seams are in their own
// files: connect.go (CONNECT), mount.go (namespacing), acl.go (access
// control), admit.go (PUBLISH admission), quotas.go; this file holds the
// connections and their revocation.
//
// Namespacing: topics and filters gain the mount "<instance-id>/" on the way
// in (OnPacketRead) and lose it on the way out (OnPacketEncode); client IDs
// become "<instance-id>/<client-id>" inside mochi, so a takeover only
// happens within an instance. Anything not under the caller's own mount is
// refused by OnACLCheck.
type tenantHook struct {
	mqtt.HookBase
	srv             *mqtt.Server
	state           *configsync.State
	defaultInstance string
	baseDomain      string
	log             *slog.Logger
	now             func() time.Time
	metrics         *Metrics
	limits          quotaTable
	minKeepalive    uint16 // seconds, MQTT 5 only
	maxKeepalive    uint16

	mu    sync.RWMutex
	conns map[*mqtt.Client]*conn
	http  map[string]*mqtt.Client // instance → inline client of its HTTP publishes
	// replayed recognises a publish the sessions hook hands back to mochi
	// once stored: it was checked and counted when first read.
	replayed func(*mqtt.Client, packets.Packet) bool
	// gens counts ACL changes per instance (authz.go).
	gens aclGenerations
	// store owns the retained-message count and quota (admit.go); nil
	// without a store.
	store store.Backend
	// cell is store when it is shared by a cell's nodes (cellquota.go).
	cell store.Cell
}

func newTenantHook(srv *mqtt.Server, state *configsync.State, defaultInstance, baseDomain string, log *slog.Logger) *tenantHook {
	h := &tenantHook{srv: srv, state: state, defaultInstance: defaultInstance, baseDomain: strings.TrimPrefix(baseDomain, "."),
		log: log, now: time.Now, conns: map[*mqtt.Client]*conn{}}
	if state != nil {
		state.OnChange(h.onChange)
	}
	return h
}

func (h *tenantHook) ID() string { return "aerie-tenant" }

func (h *tenantHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketRead,
		mqtt.OnPacketEncode, mqtt.OnPublish, mqtt.OnDisconnect}, []byte{b})
}

func (h *tenantHook) get(cl *mqtt.Client) *conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.conns[cl]
}

// InstanceOf names the instance of a connected client ("" if unknown).
func (h *tenantHook) InstanceOf(cl *mqtt.Client) string {
	if c := h.get(cl); c != nil {
		return c.instance
	}
	return ""
}

// OnDisconnect forgets the connection (and takes it off the gauges).
func (h *tenantHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	c := h.conns[cl]
	delete(h.conns, cl)
	h.mu.Unlock()
	if c != nil {
		c.releaseConnection()
	}
	if c != nil && h.metrics != nil && c.established.CompareAndSwap(true, false) {
		h.metrics.connected(c.instance, -1)
		if n := c.subs.Swap(0); n != 0 {
			h.metrics.subscribed(c.instance, -n)
		}
	}
}

func (h *tenantHook) drop(instance, reason string) {
	if h.metrics != nil {
		h.metrics.dropped(instance, reason)
	}
}

// onChange closes the live connections a config change revokes: MQTT 5
// clients get DISCONNECT 0x87 (0x8C for a revoked token) first.
func (h *tenantHook) onChange(ch configsync.Change) {
	if quotaChange(ch) {
		h.refreshQuotas(ch.InstanceID)
	}
	if !ch.Revoked {
		return
	}
	h.mu.RLock()
	var victims []*mqtt.Client
	for cl, c := range h.conns {
		if c.instance != ch.InstanceID || cl.Net.Inline {
			continue
		}
		switch ch.Kind {
		case config.KindCredentialPut, config.KindCredentialDel:
			if c.credID != ch.CredentialID {
				continue
			}
		case config.KindTokenRevoke:
			if c.jti != ch.JTI {
				continue
			}
		}
		victims = append(victims, cl)
	}
	h.mu.RUnlock()
	code := packets.ErrNotAuthorized
	if ch.Kind == config.KindTokenRevoke {
		code = packets.ErrBadAuthenticationMethod
	}
	if inst, ok := h.state.Instance(ch.InstanceID); ok && ch.Kind == config.KindInstanceStatus && inst.Limited == config.LimitSuspend {
		code = packets.ErrQuotaExceeded // suspended for the org's spend limit
	}
	for _, cl := range victims {
		h.log.Info("closing a connection whose access was revoked", "instance", ch.InstanceID, "client", cl.ID, "change", ch.Kind)
		if cl.Properties.ProtocolVersion == 5 {
			_ = h.srv.DisconnectClient(cl, code)
		} else {
			cl.Stop(code)
		}
	}
}
