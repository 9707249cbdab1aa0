package gateway

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/internal/mqtttopic"
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
// ACL rules and device-token scopes.
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

// hostOf is implemented by connections that know the name the device used
// (WebSocket Host header, TLS SNI).
type hostOf interface{ ServerName() string }

// resolveInstance picks the instance a CONNECT names: by host name
// "<instance>.<base-domain>", else by username "<user>@<instance>", else the
// node's default instance. It returns the instance and the username as the
// device's own.
func (h *tenantHook) resolveInstance(cl *mqtt.Client, username string) (instance, user string) {
	if hc, ok := cl.Net.Conn.(hostOf); ok && h.baseDomain != "" {
		host := strings.ToLower(hc.ServerName())
		if i := strings.IndexByte(host, ':'); i >= 0 {
			host = host[:i]
		}
		if sub, ok := strings.CutSuffix(host, "."+h.baseDomain); ok && sub != "" && !strings.Contains(sub, ".") {
			if u, inst, ok := cutLast(username, "@"); ok && inst == sub {
				return sub, u
			}
			return sub, username
		}
	}
	if u, inst, ok := cutLast(username, "@"); ok && inst != "" {
		return inst, u
	}
	return h.defaultInstance, username
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// OnConnect authenticates the device and namespaces its client ID and will.
// Refusals answer CONNACK with the code for the client's protocol version.
func (h *tenantHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	err := h.connect(cl, pk)
	if err != nil && h.metrics != nil {
		// Only known instances get a label: device-chosen names must not
		// create metric series.
		inst, _ := h.resolveInstance(cl, string(pk.Connect.Username))
		if h.state == nil {
			inst = ""
		} else if _, known := h.state.Instance(inst); !known {
			inst = ""
		}
		h.metrics.authFailure(inst)
	}
	return err
}

func (h *tenantHook) connect(cl *mqtt.Client, pk packets.Packet) error {
	if h.state == nil {
		return refuseConnect(h.srv, cl, packets.ErrNotAuthorized)
	}
	username := string(pk.Connect.Username)
	instance, user := h.resolveInstance(cl, username)
	inst, ok := h.state.Instance(instance)
	if instance == "" || !ok {
		return refuseConnect(h.srv, cl, packets.ErrNotAuthorized)
	}
	if inst.Status != config.StatusRunning && inst.Status != config.StatusProvisioning {
		return refuseConnect(h.srv, cl, packets.ErrNotAuthorized)
	}
	if inst.Limited == config.LimitSuspend { // over the org's spend limit
		return refuseConnect(h.srv, cl, packets.ErrQuotaExceeded)
	}
	c := &conn{instance: instance, mount: mqtttopic.MountOf(instance), username: user, clientID: cl.ID, maxLevels: inst.Quotas.MaxTopicLevels}
	c.az.gen = h.gens.of(instance)
	switch {
	case user == "" && !pk.Connect.PasswordFlag:
		if !inst.AllowAnonymous {
			return refuseConnect(h.srv, cl, packets.ErrNotAuthorized)
		}
	case user == config.DeviceTokenUsername:
		code, ok := h.checkToken(c, string(pk.Connect.Password))
		if !ok {
			return refuseConnect(h.srv, cl, code)
		}
	default:
		id, res := h.state.CheckPassword(instance, user, pk.Connect.Password, cl.ID, h.now())
		switch res {
		case configsync.AuthOK:
			c.credID = id
		case configsync.AuthBadCredentials:
			return refuseConnect(h.srv, cl, packets.ErrBadUsernameOrPassword)
		case configsync.AuthClientIDRefused:
			return refuseConnect(h.srv, cl, packets.ErrClientIdentifierNotValid)
		default: // disabled, expired, instance unavailable
			return refuseConnect(h.srv, cl, packets.ErrNotAuthorized)
		}
	}
	if cl.Properties.Will.Flag != 0 {
		if !mqtttopic.ValidTopic(cl.Properties.Will.TopicName, c.maxLevels) || !h.allowed(c, config.ActionPublish, cl.Properties.Will.TopicName, false) {
			return refuseConnect(h.srv, cl, packets.ErrTopicNameInvalid)
		}
		cl.Properties.Will.TopicName = mqtttopic.Mount(c.mount, cl.Properties.Will.TopicName)
	}
	if code := h.admitConnection(cl, c, effectiveQuotas(inst)); code != packets.CodeSuccess {
		return refuseConnect(h.srv, cl, code)
	}
	if cl.Properties.ProtocolVersion == 5 && h.maxKeepalive > 0 {
		ka := cl.State.Keepalive
		switch {
		case ka == 0 || ka > h.maxKeepalive:
			ka = h.maxKeepalive
		case ka < h.minKeepalive:
			ka = h.minKeepalive
		}
		if ka != cl.State.Keepalive {
			cl.State.Keepalive, cl.State.ServerKeepalive = ka, true // announced in the CONNACK
		}
	} else if h.maxKeepalive > 0 && (cl.State.Keepalive == 0 || cl.State.Keepalive > h.maxKeepalive) {
		// MQTT 3.1.1 has no way to tell the device: the bound only sets how
		// long the server waits for a packet (1.5 × it) before it closes a
		// silent connection, so a dead device cannot hold a connection (and
		// its memory) forever. A device that pings within it is unaffected.
		cl.State.Keepalive = h.maxKeepalive
	}
	cl.ID = c.mount + cl.ID
	h.mu.Lock()
	h.conns[cl] = c
	h.mu.Unlock()
	return nil
}

// deviceClaims adapts config.DeviceTokenClaims to jwt.Claims.
type deviceClaims struct{ config.DeviceTokenClaims }

func (c *deviceClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	if c.ExpiresAt == 0 {
		return nil, nil
	}
	return jwt.NewNumericDate(time.Unix(c.ExpiresAt, 0)), nil
}
func (c *deviceClaims) GetIssuedAt() (*jwt.NumericDate, error) {
	return jwt.NewNumericDate(time.Unix(c.IssuedAt, 0)), nil
}
func (c *deviceClaims) GetNotBefore() (*jwt.NumericDate, error) { return nil, nil }
func (c *deviceClaims) GetIssuer() (string, error)              { return c.Issuer, nil }
func (c *deviceClaims) GetSubject() (string, error)             { return "", nil }
func (c *deviceClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

// checkToken verifies a device token offline with the instance's keys.
func (h *tenantHook) checkToken(c *conn, raw string) (packets.Code, bool) {
	var claims deviceClaims
	p := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithAudience(c.instance), jwt.WithIssuer("aerie"),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(h.now))
	_, err := p.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := h.state.TokenKey(c.instance, kid)
		if !ok {
			return nil, fmt.Errorf("unknown token key %q", kid)
		}
		return ed25519.PublicKey(k.PublicKey), nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return packets.ErrNotAuthorized, false
	case err != nil:
		return packets.ErrBadUsernameOrPassword, false
	case claims.ID == "" || h.state.TokenRevoked(c.instance, claims.ID):
		return packets.ErrNotAuthorized, false
	case claims.ClientID != "" && claims.ClientID != c.clientID:
		return packets.ErrClientIdentifierNotValid, false
	}
	c.jti = claims.ID
	c.tokenExp = claims.ExpiresAt
	c.resources = claims.Resources
	if c.resources == nil {
		c.resources = []config.TokenResource{}
	}
	return packets.CodeSuccess, true
}

// OnConnectAuthenticate admits exactly the clients OnConnect accepted.
func (h *tenantHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.get(cl) != nil
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

// disconnectLinger bounds how long a connection ended for a refused packet
// is read (and discarded) after its DISCONNECT, so the DISCONNECT reaches
// a client still sending.
const disconnectLinger = time.Second

// errDenied marks a filter the device may not use: it is left outside the
// device's mount, so OnACLCheck refuses it with the right SUBACK code.
const deniedMount = "\x00denied/"

// OnPacketRead moves topics and filters into the device's namespace.
func (h *tenantHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	c := h.get(cl)
	if c == nil {
		return pk, nil // CONNECT itself, before OnConnect
	}
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.TopicName == "" {
			return pk, nil // alias-only: mochi resolves the alias to an already mounted topic
		}
		if !mqtttopic.ValidTopic(pk.TopicName, c.levels()) {
			// mochi ignores any other error from this hook and would go on
			// with the topic unmounted: reject the packet, which ends the
			// connection (MQTT 5 devices are told why first).
			h.drop(c.instance, DropACL)
			h.logRefused(cl, c, packets.Publish, packets.ErrTopicNameInvalid)
			if cl.Properties.ProtocolVersion == 5 {
				_ = h.srv.DisconnectClient(cl, packets.ErrTopicNameInvalid)
			}
			return pk, packets.ErrRejectPacket
		}
		pk.TopicName = mqtttopic.Mount(c.mount, pk.TopicName)
	case packets.Subscribe:
		h.mountSubscribe(cl, c, &pk)
	case packets.Unsubscribe:
		for i := range pk.Filters {
			pk.Filters[i].Filter = h.mountFilter(c, pk.Filters[i].Filter)
		}
	}
	return pk, nil
}

func (h *tenantHook) mountFilter(c *conn, f string) string {
	if group, inner, shared := mqtttopic.SplitShared(f); shared {
		if group == "" || !mqtttopic.ValidFilter(inner, c.levels()) {
			return deniedMount + f
		}
		return "$share/" + group + "/" + mqtttopic.Mount(c.mount, inner)
	}
	if !mqtttopic.ValidFilter(f, c.levels()) {
		return deniedMount + f
	}
	return mqtttopic.Mount(c.mount, f)
}

// mountSubscribe mounts a SUBSCRIBE's filters and refuses those beyond the
// client's subscription quota (their SUBACK code is set in OnPacketEncode).
func (h *tenantHook) mountSubscribe(cl *mqtt.Client, c *conn, pk *packets.Packet) {
	limit := 0
	if c.cl != nil {
		limit = int(c.cl.maxSubs.Load())
	}
	have := cl.State.Subscriptions.Len()
	var refused []int
	for i := range pk.Filters {
		f := h.mountFilter(c, pk.Filters[i].Filter)
		if limit > 0 && !strings.HasPrefix(f, deniedMount) {
			if _, exists := cl.State.Subscriptions.Get(f); !exists {
				if have >= limit {
					refused = append(refused, i)
					f = deniedMount + pk.Filters[i].Filter
				} else {
					have++
				}
			}
		}
		pk.Filters[i].Filter = f
	}
	if len(refused) > 0 {
		c.cl.mu.Lock()
		if c.cl.quotaRefused == nil {
			c.cl.quotaRefused = map[uint16][]int{}
		}
		c.cl.quotaRefused[pk.PacketID] = refused
		c.cl.mu.Unlock()
		h.drop(c.instance, DropQuota)
	}
}

func (h *tenantHook) drop(instance, reason string) {
	if h.metrics != nil {
		h.metrics.dropped(instance, reason)
	}
}

// OnPacketEncode takes the mount off topics going to the device.
func (h *tenantHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.TopicName == "" {
			return pk
		}
		if c := h.get(cl); c != nil {
			if t, ok := mqtttopic.Unmount(c.mount, pk.TopicName); ok {
				pk.TopicName = t
			}
		}
	case packets.Suback:
		// Filters refused for the subscription quota: 0x97 (v5); 3.1.1
		// has only 0x80, which mochi already wrote.
		if c := h.get(cl); c != nil && c.cl != nil && cl.Properties.ProtocolVersion == 5 {
			c.cl.mu.Lock()
			refused := c.cl.quotaRefused[pk.PacketID]
			delete(c.cl.quotaRefused, pk.PacketID)
			c.cl.mu.Unlock()
			if len(refused) > 0 {
				codes := append([]byte(nil), pk.ReasonCodes...)
				for _, i := range refused {
					if i < len(codes) {
						codes[i] = packets.ErrQuotaExceeded.Code
					}
				}
				pk.ReasonCodes = codes
			}
		}
	case packets.Connack:
		// Announce a session expiry the instance's quota lowered.
		if c := h.get(cl); c != nil && c.cl != nil && pk.ReasonCode == 0 {
			if v := c.cl.expiryCapped.Load(); v >= 0 {
				pk.Properties.SessionExpiryInterval = uint32(v)
				pk.Properties.SessionExpiryIntervalFlag = true
			}
		}
	}
	return pk
}

// OnACLCheck decides subscriptions (a filter) and deliveries (a topic).
// Publishing is decided in OnPublish, which can answer with a reason code.
func (h *tenantHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	c := h.get(cl)
	if c == nil {
		return false
	}
	if write {
		return true
	}
	_, inner, shared := mqtttopic.SplitShared(topic)
	t, ok := mqtttopic.Unmount(c.mount, inner)
	if !ok {
		return false
	}
	return h.mayRead(c, t, shared)
}

// OnPublish refuses publishes the ACL or the device token do not allow:
// MQTT 5 QoS≥1 gets PUBACK 0x87, anything else is acknowledged and dropped.
// It also applies the publish quotas: over a rate quota it waits on the
// client's read goroutine (back-pressure, quotas.go), and a client held
// back for longer than its bound is disconnected with 0x96.
func (h *tenantHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || h.replayed != nil && h.replayed(cl, pk) {
		return pk, nil
	}
	c := h.get(cl)
	if c == nil {
		return pk, packets.ErrRejectPacket
	}
	t, ok := mqtttopic.Unmount(c.mount, pk.TopicName)
	if !ok || !h.allowed(c, config.ActionPublish, t, false) || !h.topicAllowed(c.instance, t, pk) {
		h.drop(c.instance, DropACL)
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
			return pk, packets.ErrNotAuthorized
		}
		h.logRefused(cl, c, packets.Publish, packets.ErrNotAuthorized)
		return pk, packets.CodeSuccessIgnore
	}
	if code, ok, disconnect := h.checkPublishQuota(cl, c, pk); !ok {
		if cl.Closed() {
			return pk, packets.ErrRejectPacket
		}
		if disconnect {
			h.log.Info("closing a connection over its quota", "instance", c.instance, "client", c.clientID, "packet_type", "PUBLISH", "reason", code.Reason)
			if cl.Properties.ProtocolVersion == 5 {
				// On the client's read goroutine: the DISCONNECT must not be
				// lost to a reset while the client is still sending.
				_ = h.srv.DisconnectClientLingering(cl, code, disconnectLinger)
			} else {
				cl.Stop(code)
			}
			return pk, packets.ErrRejectPacket
		}
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
			return pk, code
		}
		h.logRefused(cl, c, packets.Publish, code)
		return pk, packets.CodeSuccessIgnore
	}
	if pk.FixedHeader.Retain && len(pk.Payload) > 0 && c.lim != nil && h.overRetained(c, c.lim.quotas(), pk.TopicName) {
		// Beyond the retained quota, and the client cannot be told
		// (3.1.1, QoS 0): delivered, not retained. Never acknowledged and
		// then dropped.
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

// allowed evaluates the device token's scopes (if any) and the instance's
// ACL rules: deny wins, and something must allow. s is a topic, or a
// filter when isFilter. A filter is allowed when an allow rule covers it
// and no deny rule does: a deny that only overlaps it (deny "a/secret",
// filter "a/+") leaves it granted, and the denied topics are held back at
// delivery (authz.go).
func (h *tenantHook) allowed(c *conn, action, s string, isFilter bool) bool {
	if c.resources != nil {
		ok := false
		for _, r := range c.resources {
			if !containsString(r.Actions, action) {
				continue
			}
			if f, good := c.expand(r.Filter); good && mqtttopic.Covers(f, s) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	allow := false
	for _, r := range h.state.ACL(c.instance) {
		if r.CredentialID != "" && r.CredentialID != c.credID {
			continue
		}
		if r.Action != config.ActionAll && r.Action != action {
			continue
		}
		f, good := c.expand(r.Filter)
		if r.Effect == config.EffectDeny {
			// A placeholder that cannot be expanded safely denies everything.
			if !good || (isFilter && mqtttopic.Covers(f, s)) || (!isFilter && mqtttopic.MatchLevels(f, s)) {
				return false
			}
			continue
		}
		if good && mqtttopic.Covers(f, s) {
			allow = true
		}
	}
	return allow
}

// expand substitutes ${username} and ${clientid}; a value that would add
// levels or wildcards makes the rule unusable (good false), so a device
// cannot widen a rule by choosing its client ID.
func (c *conn) expand(filter string) (string, bool) {
	if !strings.Contains(filter, "${") {
		return filter, true
	}
	unsafe := func(v string) bool { return v == "" || strings.ContainsAny(v, "/+#\x00") }
	if strings.Contains(filter, "${username}") && unsafe(c.username) || strings.Contains(filter, "${clientid}") && unsafe(c.clientID) {
		return "", false
	}
	f := strings.ReplaceAll(filter, "${username}", c.username)
	f = strings.ReplaceAll(f, "${clientid}", c.clientID)
	return f, true
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
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
