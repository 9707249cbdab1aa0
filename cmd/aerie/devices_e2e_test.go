package main_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// api is a small JSON client for the control plane's REST API.
type api struct {
	base, token string
}

func (a api) call(t testing.TB, method, path string, body any, want int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
}

type instanceOut struct {
	ID        string
	Status    string
	NodeID    string `json:"node_id"`
	Endpoints struct{ MQTT, MQTTS, WSS *string }
}

type credOut struct {
	ID           string
	Password     string
	MQTTUsername string `json:"mqtt_username"`
}

// signup creates a user and org and returns an API client with its token.
func signup(t testing.TB, base, email string) (api, string) {
	t.Helper()
	var s struct {
		AccessToken string `json:"access_token"`
		Org         struct{ ID string }
	}
	api{base: base}.call(t, "POST", "/v1/signup", map[string]any{"email": email, "password": "correct horse battery", "org_name": "Org " + email}, 201, &s)
	return api{base: base, token: s.AccessToken}, s.Org.ID
}

func waitRunning(t testing.TB, c api, org, inst string) instanceOut {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var in instanceOut
		c.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst, nil, 200, &in)
		if in.Status == "running" {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s still %s", inst, in.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connect5 connects an MQTT 5 client and returns it, or the CONNACK reason
// code of the refusal.
func connect5(t *testing.T, addr, clientID, user, pass string, onMsg func(*paho.Publish)) (*paho.Client, byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{Conn: conn}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) { onMsg(p.Packet); return true, nil }}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass)})
	if err != nil {
		conn.Close()
		if ca == nil {
			t.Fatalf("connect %s: %v", user, err)
		}
		return nil, ca.ReasonCode
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, 0
}

// connect3 connects an MQTT 3.1.1 client; the error carries the return code.
func connect3(addr, clientID, user, pass string) (mqtt3.Client, error) {
	opts := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetConnectRetry(false).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	c := mqtt3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	return c, tok.Error()
}

// TestDevicesEndToEnd: through `aerie serve`, a user signs up, creates an
// instance and a credential, and a device connects as user@instance and
// exchanges messages; every wrong way in is refused with the right code.
func TestDevicesEndToEnd(t *testing.T) {
	dataDir := newDataDir(t)
	pp := freePorts(t)
	dsn := pgtest.EmptyDSN(t)
	p := start(t, cleanEnv("DATABASE_URL="+dsn), append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	c, org := signup(t, base, "dev@example.com")

	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "home"}, 201, &inst)
	inst = waitRunning(t, c, org, inst.ID)
	_, mqttPort, _ := net.SplitHostPort(pp.mqtt)
	if inst.Endpoints.MQTT == nil || !strings.HasSuffix(*inst.Endpoints.MQTT, ":"+mqttPort) {
		t.Fatalf("mqtt endpoint %v; want the node's port %s", inst.Endpoints.MQTT, mqttPort)
	}
	var cred, disabled, expiring credOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "sensor-1"}, 201, &cred)
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "off"}, 201, &disabled)
	c.call(t, "PATCH", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials/"+disabled.ID, map[string]any{"enabled": false}, 200, nil)
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials",
		map[string]any{"username": "brief", "expires_at": time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)}, 201, &expiring)
	if cred.MQTTUsername != "sensor-1@"+inst.ID {
		t.Fatalf("mqtt_username %q", cred.MQTTUsername)
	}
	var scoped struct {
		Token        string
		MQTTUsername string `json:"mqtt_username"`
	}
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/tokens",
		map[string]any{"resources": []map[string]any{{"filter": "a/#", "actions": []string{"publish", "subscribe"}}}, "ttl_seconds": 600}, 201, &scoped)
	expiredToken := signExpiredToken(t, dsn, dataDir, inst.ID)
	time.Sleep(300 * time.Millisecond) // the node applies the pushes

	t.Run("a device connects over TLS and secure WebSocket with the generated certificate", func(t *testing.T) {
		if inst.Endpoints.MQTTS == nil || inst.Endpoints.WSS == nil {
			t.Fatalf("no TLS endpoints: %+v", inst.Endpoints)
		}
		certPEM, err := os.ReadFile(filepath.Join(dataDir, "tls", "cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(certPEM) {
			t.Fatal("no certificate in cert.pem")
		}
		for _, ep := range []string{strings.Replace(*inst.Endpoints.MQTTS, "mqtts://", "ssl://", 1), *inst.Endpoints.WSS} {
			opts := mqtt3.NewClientOptions().AddBroker(ep).SetClientID("tls-1").SetUsername(cred.MQTTUsername).SetPassword(cred.Password).
				SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).
				SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: "localhost"})
			cl := mqtt3.NewClient(opts)
			if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("%s: %v", ep, tok.Error())
			}
			// Not under home/#: mochi fans out after the PUBACK, so the next subtest's subscriber could still see it.
			if tok := cl.Publish("tls/check", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("%s publish: %v", ep, tok.Error())
			}
			cl.Disconnect(0)
		}
	})

	t.Run("v5 device publishes and subscribes", func(t *testing.T) {
		got := make(chan *paho.Publish, 1)
		sub, code := connect5(t, pp.mqtt, "sub-1", cred.MQTTUsername, cred.Password, func(p *paho.Publish) { got <- p })
		if code != 0 {
			t.Fatalf("refused 0x%02x", code)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "home/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		pub, code := connect5(t, pp.mqtt, "pub-1", cred.MQTTUsername, cred.Password, nil)
		if code != 0 {
			t.Fatalf("refused 0x%02x", code)
		}
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "home/temp", QoS: 1, Payload: []byte("21.5")}); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m.Topic != "home/temp" || string(m.Payload) != "21.5" {
				t.Fatalf("got %q %q", m.Topic, m.Payload)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("message not delivered")
		}
	})

	t.Run("v3.1.1 device connects", func(t *testing.T) {
		cl, err := connect3(pp.mqtt, "v3-1", cred.MQTTUsername, cred.Password)
		if err != nil {
			t.Fatal(err)
		}
		cl.Disconnect(0)
	})

	time.Sleep(2 * time.Second) // let "brief" expire
	refusals := []struct {
		name       string
		user, pass string
		v5         byte
		v3         string
	}{
		{"wrong password", cred.MQTTUsername, "not-the-password", 0x86, "bad user name or password"},
		{"unknown instance", "sensor-1@i-nosuchinst", cred.Password, 0x87, "not Authorized"},
		{"disabled credential", disabled.MQTTUsername, disabled.Password, 0x87, "not Authorized"},
		{"expired credential", expiring.MQTTUsername, expiring.Password, 0x87, "not Authorized"},
		{"expired token", "token@" + inst.ID, expiredToken, 0x87, "not Authorized"},
	}
	for _, r := range refusals {
		t.Run(r.name+" is refused", func(t *testing.T) {
			if _, code := connect5(t, pp.mqtt, "x5", r.user, r.pass, nil); code != r.v5 {
				t.Fatalf("v5 CONNACK 0x%02x, want 0x%02x", code, r.v5)
			}
			_, err := connect3(pp.mqtt, "x3", r.user, r.pass)
			if err == nil || !strings.Contains(err.Error(), r.v3) {
				t.Fatalf("v3.1.1 connect error %v, want %q", err, r.v3)
			}
		})
	}

	t.Run("a token limited to a/# cannot use b/x or #", func(t *testing.T) {
		cl, code := connect5(t, pp.mqtt, "tok-1", scoped.MQTTUsername, scoped.Token, nil)
		if code != 0 {
			t.Fatalf("token refused 0x%02x", code)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sa, err := cl.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}, {Topic: "a/+", QoS: 1}}})
		if sa == nil || len(sa.Reasons) != 2 || sa.Reasons[0] != 0x87 || sa.Reasons[1] != 1 {
			t.Fatalf("suback %+v %v; want [0x87 0x01]", sa, err)
		}
		pr, err := cl.Publish(ctx, &paho.Publish{Topic: "b/x", QoS: 1, Payload: []byte("x")})
		if pr == nil || pr.ReasonCode != 0x87 {
			t.Fatalf("publish to b/x: %+v %v; want PUBACK 0x87", pr, err)
		}
		if pr, err := cl.Publish(ctx, &paho.Publish{Topic: "a/x", QoS: 1, Payload: []byte("x")}); err != nil || pr.ReasonCode >= 0x80 {
			t.Fatalf("publish to a/x: %+v %v", pr, err)
		}
	})

	t.Run("revoking a credential closes its connection within 1 s", func(t *testing.T) {
		var victim credOut
		c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "victim"}, 201, &victim)
		time.Sleep(200 * time.Millisecond)
		conn, err := net.DialTimeout("tcp", pp.mqtt, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		gone := make(chan byte, 1)
		cl := paho.NewClient(paho.ClientConfig{Conn: conn,
			OnServerDisconnect: func(d *paho.Disconnect) { gone <- d.ReasonCode }})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := cl.Connect(ctx, &paho.Connect{ClientID: "victim-1", CleanStart: true, KeepAlive: 30, UsernameFlag: true,
			Username: victim.MQTTUsername, PasswordFlag: true, Password: []byte(victim.Password)}); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		c.call(t, "DELETE", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials/"+victim.ID, nil, 204, nil)
		select {
		case code := <-gone:
			if code != 0x87 && code != 0x8C {
				t.Fatalf("DISCONNECT 0x%02x", code)
			}
			if d := time.Since(began); d > time.Second {
				t.Fatalf("closed after %s", d)
			}
			t.Logf("API 204 to DISCONNECT: %s", time.Since(began))
		case <-time.After(2 * time.Second):
			t.Fatal("connection not closed")
		}
	})

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// signExpiredToken signs a device token that expired a minute ago with the
// instance's real key, so the node's expiry check is what refuses it.
func signExpiredToken(t *testing.T, dsn, dataDir, instanceID string) string {
	now := time.Now()
	return signDeviceToken(t, dsn, dataDir, instanceID, jwt.MapClaims{"jti": "t-expired", "iat": now.Add(-2 * time.Hour).Unix(),
		"exp": now.Add(-time.Minute).Unix(), "res": []map[string]any{{"filter": "#", "actions": []string{"publish"}}}})
}

// signDeviceToken signs a device token of the instance with its real key
// (read from the database and opened with the data dir's key-encryption
// key, as only the control plane can); claims gain iss and aud.
func signDeviceToken(t *testing.T, dsn, dataDir, instanceID string, claims jwt.MapClaims) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var kid string
	var sealed []byte
	if err := conn.QueryRow(ctx, `SELECT kid, private_key FROM instance_token_keys WHERE instance_id = $1`, instanceID).Scan(&kid, &sealed); err != nil {
		t.Fatal(err)
	}
	seed := openTokenKey(t, dataDir, instanceID, kid, sealed)
	claims["iss"], claims["aud"] = "aerie", instanceID
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
