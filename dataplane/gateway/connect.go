package gateway

// Device connect: which instance a CONNECT names, authentication (password
// credentials, device tokens, anonymous), the will, the connection quotas
// (quotas.go admitConnection) and the keepalive bounds.

import (
	"github.com/aeriemq/aerie/internal/mqtttopic"

	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
)

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
	h.boundKeepalive(cl)
	cl.ID = c.mount + cl.ID
	h.mu.Lock()
	h.conns[cl] = c
	h.mu.Unlock()
	return nil
}

// boundKeepalive brings a device's keepalive within the node's bounds.
func (h *tenantHook) boundKeepalive(cl *mqtt.Client) {
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
