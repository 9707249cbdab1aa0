package gateway

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Expiry on live connections. A connection authenticated by a credential
// with an expires_at, or by a device token (whose exp is required), gets one
// runtime timer (time.AfterFunc) set to that instant: no polling, and a
// connection without an expiry costs nothing. When it fires, the connection
// is closed: MQTT 5 clients first get DISCONNECT 0xA0 (Maximum connect
// time: "the maximum connection time authorized for this connection has
// been exceeded", which is what happened, and tells the device to come
// back with a new credential or token rather than that a permission is
// missing, as 0x87 would); MQTT 3.1.1 has no DISCONNECT from the server,
// so the socket is closed. A credential whose expiry changes through the
// API keeps its connections and has their timers re-armed with the new
// instant (one already past closes them at once).

// expiryTimer is one connection's armed timer.
type expiryTimer struct{ t *time.Timer }

func (e *expiryTimer) stop() { e.t.Stop() }

// expiryOf is when the connection's authorization ends: the earlier of its
// token's exp and its credential's expires_at (zero: never).
func (a *authzHook) expiryOf(c *conn) time.Time {
	var exp time.Time
	if c.tokenExp > 0 {
		exp = time.Unix(c.tokenExp, 0)
	}
	if c.credID != "" && a.t.state != nil {
		if e, ok := a.t.state.CredentialExpiry(c.instance, c.credID); ok && !e.IsZero() && (exp.IsZero() || e.Before(exp)) {
			exp = e
		}
	}
	return exp
}

// arm (re)sets the connection's expiry timer from the current config.
func (a *authzHook) arm(cl *mqtt.Client, c *conn) {
	exp := a.expiryOf(c)
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.timers[cl]; old != nil {
		old.stop()
		delete(a.timers, cl)
	}
	// OnDisconnect follows Closed and takes a.mu: a timer set here for a
	// client not yet closed is always stopped by it.
	if exp.IsZero() || cl.Closed() {
		return
	}
	a.timers[cl] = &expiryTimer{t: time.AfterFunc(exp.Sub(a.t.now()), func() { a.expired(cl, c) })}
}

// expired closes the connection if its authorization has ended (the config
// may have moved the instant since the timer was set).
func (a *authzHook) expired(cl *mqtt.Client, c *conn) {
	if cl.Closed() || a.t.get(cl) != c {
		return
	}
	exp := a.expiryOf(c)
	if exp.IsZero() {
		return
	}
	if exp.After(a.t.now()) {
		a.arm(cl, c)
		return
	}
	a.t.log.Info("closing a connection whose credential or token expired", "instance", c.instance, "client", c.clientID)
	if cl.Properties.ProtocolVersion == 5 {
		_ = a.t.srv.DisconnectClient(cl, packets.ErrMaxConnectTime)
	} else {
		cl.Stop(packets.ErrMaxConnectTime)
	}
}
