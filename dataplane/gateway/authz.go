package gateway

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/internal/mqtttopic"
)

// Authorization for the life of a connection.
//
// A subscription is granted against the rules in force when it is made, but
// each message is delivered only if the rules in force at delivery let the
// client receive its topic: a deny rule added (or an allow rule deleted)
// after the subscription stops deliveries at once, whether they come from
// mochi's own fan-out (OnACLCheck with a topic), the sessions hook's QoS 0
// push or its store-served QoS ≥ 1 pump (sessions.Options.MayReceive). A
// refused stored message is skipped and acknowledged there, so its cursor
// moves on and it never holds the client's window.
//
// The delivery check is on the hot path, so its decision is cached per
// connection and invalidated by a generation counter per instance, which
// every ACL-affecting config change bumps (after the new rules are in the
// state). At the first delivery of a generation the connection works out
// whether its rules let it receive everything (an allow "#" applies to it,
// no deny does and its token, if any, is not narrower: the default rule of
// an instance); then every delivery is one atomic load and one uncontended
// mutex. Otherwise decisions are cached per topic, evaluated once per
// connection and topic after each change.

// maxCachedTopics bounds a connection's cache of delivery decisions; when
// full it starts over (a client receiving more distinct topics than this
// pays for rule evaluation, nothing else).
const maxCachedTopics = 256

// aclGenerations holds one counter per instance, bumped on each change to
// the instance's ACL rules.
type aclGenerations struct {
	mu sync.Mutex
	m  map[string]*atomic.Uint64
}

// of returns the instance's counter (created on first use).
func (g *aclGenerations) of(instance string) *atomic.Uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]*atomic.Uint64{}
	}
	c := g.m[instance]
	if c == nil {
		c = new(atomic.Uint64)
		g.m[instance] = c
	}
	return c
}

// bump invalidates the cached decisions of the instance's connections.
func (g *aclGenerations) bump(instance string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.m[instance]; c != nil {
		c.Add(1)
	}
}

// bumpAll invalidates every cached decision (a snapshot replaced the state).
func (g *aclGenerations) bumpAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.m {
		c.Add(1)
	}
}

// connAuthz is a connection's cache of delivery decisions.
type connAuthz struct {
	gen *atomic.Uint64 // the instance's ACL generation

	mu     sync.Mutex
	at     uint64          // generation the cache holds decisions of
	valid  bool            // at and all are set
	all    bool            // the rules at generation at allow every topic
	topics map[string]bool // topic (unmounted) → may receive; nil while all
	// subscribing holds the wildcard-free filters of the SUBSCRIBE being
	// processed: mochi checks them with OnACLCheck like a delivery, and a
	// refused subscription is not a dropped message.
	subscribing []string
}

// aclChange reports whether a config change may alter ACL decisions of the
// instance's connections.
func aclChange(ch configsync.Change) bool {
	switch ch.Kind {
	case config.KindACLPut, config.KindACLDelete, config.KindACLReplace, config.KindInstancePut, config.KindInstanceDelete, config.KindSnapshot:
		return true
	}
	return false
}

// deliverable reports whether the connection may receive a message on the
// unmounted topic t under the rules now in force (cached; see above).
func (h *tenantHook) deliverable(c *conn, t string) bool {
	z := &c.az
	var gen uint64
	if z.gen != nil {
		gen = z.gen.Load()
	}
	z.mu.Lock()
	if !z.valid || z.at < gen {
		z.mu.Unlock()
		all := h.allowsEverything(c)
		z.mu.Lock()
		if !z.valid || z.at < gen {
			z.at, z.valid, z.all = gen, true, all
			clear(z.topics)
		}
	}
	if z.at == gen {
		if z.all {
			z.mu.Unlock()
			return true
		}
		if v, ok := z.topics[t]; ok {
			z.mu.Unlock()
			return v
		}
	}
	z.mu.Unlock()
	v := h.allowed(c, config.ActionSubscribe, t, false)
	z.mu.Lock()
	if z.at == gen { // else the rules changed meanwhile: do not cache
		if z.topics == nil {
			z.topics = map[string]bool{}
		} else if len(z.topics) >= maxCachedTopics {
			clear(z.topics)
		}
		z.topics[t] = v
	}
	z.mu.Unlock()
	return v
}

// allowsEverything reports whether allowed(c, subscribe, s) holds for every
// s: an allow rule "#" applies to the connection, no deny rule does, and a
// device token (if any) grants subscribe on "#".
func (h *tenantHook) allowsEverything(c *conn) bool {
	return h.decide(c, config.ActionSubscribe, aclQuery{everything: true})
}

// mayRead is OnACLCheck's answer for a subscription (filter) or a
// delivery (topic). Deny rules refuse a filter only when they cover it:
// subscribing "#" beside a rule denying "test/secret" is granted, and the
// messages on test/secret are held back at delivery instead (as in
// Mosquitto's dynamic security and EMQX). A wildcard-free string is both a
// topic and a filter: the decision is the same, only a refused delivery is
// counted as a drop.
func (h *tenantHook) mayRead(c *conn, t string, shared bool) bool {
	if shared || mqtttopic.HasWildcard(t) {
		return h.allowed(c, config.ActionSubscribe, t, true)
	}
	if h.deliverable(c, t) {
		return true
	}
	if !c.az.isSubscribing(mqtttopic.Mount(c.mount, t)) {
		h.drop(c.instance, DropACL)
	}
	return false
}

func (z *connAuthz) isSubscribing(filter string) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, f := range z.subscribing {
		if f == filter {
			return true
		}
	}
	return false
}

// mayReceive is the sessions hook's delivery check (topic as mochi sees
// it). An unknown client is one whose connection is ending: nothing is
// written to it, and its messages must stay for its next connection, so it
// is not refused here.
func (h *tenantHook) mayReceive(cl *mqtt.Client, topic string) bool {
	if cl.Net.Inline {
		return true
	}
	c := h.get(cl)
	if c == nil {
		return true
	}
	t, ok := mqtttopic.Unmount(c.mount, topic)
	if ok && h.deliverable(c, t) {
		return true
	}
	h.drop(c.instance, DropACL)
	return false
}

// authzHook keeps authorization in force on live connections: it arms the
// expiry timers (expiry.go) and tells deliveries from subscriptions in
// OnACLCheck. It runs beside the tenant hook, which owns the connections.
type authzHook struct {
	mqtt.HookBase
	t *tenantHook

	mu     sync.Mutex
	timers map[*mqtt.Client]*expiryTimer
}

func newAuthzHook(t *tenantHook) *authzHook {
	a := &authzHook{t: t, timers: map[*mqtt.Client]*expiryTimer{}}
	if t.state != nil {
		t.state.OnChange(a.onChange)
	}
	return a
}

func (a *authzHook) ID() string { return "aerie-authz" }

func (a *authzHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnDisconnect, mqtt.OnWill:
		return true
	}
	return false
}

// OnSubscribe notes the wildcard-free filters mochi is about to check.
func (a *authzHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	c := a.t.get(cl)
	if c == nil {
		return pk
	}
	var plain []string
	for _, f := range pk.Filters {
		if !mqtttopic.HasWildcard(f.Filter) {
			plain = append(plain, f.Filter)
		}
	}
	c.az.mu.Lock()
	c.az.subscribing = plain
	c.az.mu.Unlock()
	return pk
}

// OnSubscribed ends the SUBSCRIBE's checks.
func (a *authzHook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if c := a.t.get(cl); c != nil {
		c.az.mu.Lock()
		c.az.subscribing = nil
		c.az.mu.Unlock()
	}
}

// OnWill re-checks a will against the rules in force when it is due (it
// was allowed at CONNECT): one the rules now refuse is dropped (Flag 0, so
// neither the sessions hook nor mochi publishes it) and counted. A delayed
// will of a persistent session is published later from the store and was
// checked at CONNECT only.
func (a *authzHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if atomic.LoadUint32(&will.Flag) == 0 {
		return will, nil
	}
	c := a.t.get(cl)
	if c == nil {
		return will, nil
	}
	t, ok := mqtttopic.Unmount(c.mount, will.TopicName)
	if !ok || !a.t.allowed(c, config.ActionPublish, t, false) {
		a.t.drop(c.instance, DropACL)
		will.Flag = 0
	}
	return will, nil
}

// OnSessionEstablished arms the connection's expiry timer (after CONNACK).
func (a *authzHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if c := a.t.get(cl); c != nil {
		a.arm(cl, c)
	}
}

// OnDisconnect stops the connection's expiry timer.
func (a *authzHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	a.mu.Lock()
	t := a.timers[cl]
	delete(a.timers, cl)
	a.mu.Unlock()
	if t != nil {
		t.stop()
	}
}

// onChange invalidates cached delivery decisions after an ACL change and
// re-arms the expiry timers of connections whose credential changed.
func (a *authzHook) onChange(ch configsync.Change) {
	if aclChange(ch) {
		if ch.Kind == config.KindSnapshot {
			a.t.gens.bumpAll()
		} else {
			a.t.gens.bump(ch.InstanceID)
		}
	}
	if ch.Revoked {
		return // the tenant hook closes those connections
	}
	switch ch.Kind {
	case config.KindCredentialPut, config.KindSnapshot:
	default:
		return
	}
	type live struct {
		cl *mqtt.Client
		c  *conn
	}
	var rearm []live
	a.t.mu.RLock()
	for cl, c := range a.t.conns {
		if c.credID == "" || cl.Net.Inline {
			continue
		}
		if ch.Kind == config.KindCredentialPut && (c.instance != ch.InstanceID || c.credID != ch.CredentialID) {
			continue
		}
		rearm = append(rearm, live{cl, c})
	}
	a.t.mu.RUnlock()
	for _, l := range rearm {
		a.arm(l.cl, l.c)
	}
}
