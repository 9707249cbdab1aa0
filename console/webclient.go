package console

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/aeriemq/aerie/tenancy"
)

// The web MQTT client: the page connects to the instance's WebSocket
// endpoint as a device, with a device token minted for the signed-in user
// (audit-logged as device_token.issue): short-lived, pinned to one client
// ID, and subject to the instance's ACL and quotas like any device.

// webClientTTL is how long a web client's token is valid.
const webClientTTL = 15 * time.Minute

// WebClientView is the web client page.
type WebClientView struct {
	Inst tenancy.Instance
	WS   string // the WebSocket endpoint the page connects to ("" if none)
}

// wsEndpoint picks the instance's WebSocket endpoint: wss when the console
// is served over TLS (a browser refuses ws from an https page), else ws.
func (c *Console) wsEndpoint(in tenancy.Instance) string {
	if c.secure {
		return in.Endpoints["wss"]
	}
	if ws := in.Endpoints["ws"]; ws != "" {
		return ws
	}
	return in.Endpoints["wss"]
}

func (c *Console) webClient(w http.ResponseWriter, r *http.Request) {
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	v := WebClientView{Inst: in, WS: c.wsEndpoint(in)}
	if u, err := url.Parse(v.WS); err == nil && v.WS != "" {
		// The page may open a WebSocket to the instance's endpoint, and
		// nothing else.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; connect-src 'self' "+u.Scheme+"://"+u.Host)
	}
	p := c.page(w, r, in.Name+" · web client", "instances")
	c.render(w, r, http.StatusOK, WebClientPage(p, v))
}

// webClientToken mints the page's device token (JSON, for aerie.js).
func (c *Console) webClientToken(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.allow(w, r, tenancy.ScopeWrite); !ok {
		return
	}
	in, ok := c.loadInstance(w, r)
	if !ok {
		return
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	clientID := "console-" + hex.EncodeToString(rnd[:])
	_, tok, err := c.svc.IssueDeviceToken(r.Context(), actor(r), in.OrgID, in.ID, tenancy.NewDeviceToken{
		ClientID: clientID, TTL: webClientTTL,
		Resources: []tenancy.TokenResource{{Filter: "#", Actions: []string{tenancy.ActionPublish, tenancy.ActionSubscribe}}},
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"url": c.wsEndpoint(in), "client_id": clientID,
		"username": tenancy.DeviceTokenUsername + "@" + in.ID, "password": tok,
	})
}
