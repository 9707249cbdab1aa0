package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/internal/pgtest"
)

func logMarker(kind string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return kind + "MARK" + strings.ToUpper(hex.EncodeToString(b))
}

// secretForms are the ways a secret could show in a log line: as is, hex,
// base64 at each of the three alignments (without the last, context-
// dependent group), and Go's %v of a byte slice.
func secretForms(s string) []string {
	out := []string{s, hex.EncodeToString([]byte(s)), strings.ToUpper(hex.EncodeToString([]byte(s)))}
	for k := 0; k < 3; k++ {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			e := enc.EncodeToString([]byte(s[k:]))
			out = append(out, e[:len(e)-4])
		}
	}
	return append(out, strings.Trim(fmt.Sprint([]byte(s)), "[]"))
}

// mqttString and mqttPacket build raw MQTT 3.1.1 packets.
func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func mqttPacket(first byte, body []byte) []byte {
	out := []byte{first}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func rawConnect(clientID, user, pass string) []byte {
	body := append(mqttString("MQTT"), 4, 0xC2, 0, 30)
	body = append(body, mqttString(clientID)...)
	body = append(body, mqttString(user)...)
	body = append(body, mqttString(pass)...)
	return mqttPacket(0x10, body)
}

func rawPublish(topic string, qos byte, payload []byte) []byte {
	body := mqttString(topic)
	if qos > 0 {
		body = append(body, 0, 1)
	}
	return mqttPacket(0x30|qos<<1, append(body, payload...))
}

// TestServeLogHoldsNoSecrets (issue 13, item 2), black-box through `aerie
// serve` at --log-level debug: an account's password, its API key and
// access token, device passwords and tokens (valid, expired, garbage),
// payloads of refused and malformed publishes, and an HTTP publish's body
// never reach the process's output in any encoding; a device that causes
// 3,000 errors adds at most 20 lines; refusals name client, instance,
// packet type and reason.
func TestServeLogHoldsNoSecrets(t *testing.T) {
	dataDir := newDataDir(t)
	pp := freePorts(t)
	dsn := pgtest.EmptyDSN(t)
	p := start(t, cleanEnv("DATABASE_URL="+dsn), append([]string{"serve", "--data-dir", dataDir, "--log-level", "debug", "--log-format", "json"}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	var secrets []string
	secret := func(kind string) string { s := logMarker(kind); secrets = append(secrets, s); return s }
	payload := func(kind string, size int) []byte {
		m := secret(kind)
		return bytes.Repeat([]byte(m+" "), size/(len(m)+1)+1)[:size]
	}

	// The account: signup, a wrong login, an API key.
	userPW := secret("USERPW")
	var s struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		Org          struct{ ID string }
	}
	api{base: base}.call(t, "POST", "/v1/signup", map[string]any{"email": "logs@example.com", "password": userPW, "org_name": "Logs"}, 201, &s)
	secrets = append(secrets, s.AccessToken, s.RefreshToken)
	api{base: base}.call(t, "POST", "/v1/auth/login", map[string]any{"email": "logs@example.com", "password": secret("WRONGUSERPW")}, 401, nil)
	c, org := api{base: base, token: s.AccessToken}, s.Org.ID
	var key struct{ Secret string }
	c.call(t, "POST", "/v1/orgs/"+org+"/api-keys", map[string]any{"name": "k", "scopes": []string{"admin"}}, 201, &key)
	secrets = append(secrets, key.Secret)
	c = api{base: base, token: key.Secret}
	// A bad API key is refused.
	api{base: base, token: "aer_zzzzzzzz_" + secret("BADKEY")}.call(t, "GET", "/v1/orgs/"+org, nil, 401, nil)

	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "logs"}, 201, &inst)
	inst = waitRunning(t, c, org, inst.ID)
	var cred credOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "dev"}, 201, &cred)
	secrets = append(secrets, cred.Password)
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/acl-rules", map[string]any{"effect": "deny", "action": "publish", "filter": "forbidden/#"}, 201, nil)
	var tok struct{ Token string }
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/tokens",
		map[string]any{"resources": []map[string]any{{"filter": "a/#", "actions": []string{"publish"}}}, "ttl_seconds": 600}, 201, &tok)
	expired := signExpiredToken(t, dsn, dataDir, inst.ID)
	secrets = append(secrets, tok.Token, tok.Token[strings.LastIndexByte(tok.Token, '.')+1:], expired, expired[strings.LastIndexByte(expired, '.')+1:])
	// An HTTP publish the node refuses (too large) and one to a bad topic.
	big := base64.StdEncoding.EncodeToString(payload("HTTPBIG", 300<<10))
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/publish", map[string]any{"topic": "t", "payload": big, "payload_encoding": "base64"}, 413, nil)
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/publish", map[string]any{"topic": "bad/#", "payload": string(payload("HTTPBAD", 100))}, 400, nil)
	time.Sleep(300 * time.Millisecond) // the node applies the pushes

	user := cred.MQTTUsername
	dial := func() net.Conn {
		conn, err := net.DialTimeout("tcp", pp.mqtt, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	drainConn := func(conn net.Conn) {
		buf := make([]byte, 4096)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}
	// Double CONNECT (the second logged the password before).
	conn := dial()
	_, _ = conn.Write(rawConnect("double", user, cred.Password))
	_, _ = conn.Write(rawConnect("double", user, cred.Password))
	drainConn(conn)
	// Bad passwords and tokens, v5 and v3.1.1.
	for i, pw := range []string{secret("BADPW"), secret("GARBAGETOKEN"), expired} {
		u := user
		if i > 0 {
			u = "token@" + inst.ID
		}
		if _, code := connect5(t, pp.mqtt, fmt.Sprintf("bad5-%d", i), u, pw, nil); code == 0 {
			t.Fatalf("case %d accepted (v5)", i)
		}
		if _, err := connect3(pp.mqtt, fmt.Sprintf("bad3-%d", i), u, pw); err == nil {
			t.Fatalf("case %d accepted (v3.1.1)", i)
		}
	}
	// Refused publishes: ACL deny (v5 QoS 1, v3.1.1 QoS 1) and a token's scope.
	ctx := context.Background()
	v5, code := connect5(t, pp.mqtt, "acl5", user, cred.Password, nil)
	if code != 0 {
		t.Fatalf("refused 0x%02x", code)
	}
	if pr, err := v5.Publish(ctx, &paho.Publish{Topic: "forbidden/x", QoS: 1, Payload: payload("ACLV5", 2000)}); pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("denied publish: %+v %v", pr, err)
	}
	tc, code := connect5(t, pp.mqtt, "tok5", "token@"+inst.ID, tok.Token, nil)
	if code != 0 {
		t.Fatalf("token refused 0x%02x", code)
	}
	if pr, err := tc.Publish(ctx, &paho.Publish{Topic: "b/x", QoS: 1, Payload: payload("SCOPE", 2000)}); pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("out-of-scope publish: %+v %v", pr, err)
	}
	v3, err := connect3(pp.mqtt, "acl3", user, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	v3.Publish("forbidden/y", 1, false, payload("ACLV3", 2000)).WaitTimeout(5 * time.Second)
	v3.Disconnect(0)
	// Malformed: invalid UTF-8 topic, QoS 3, a truncated packet.
	for i, m := range [][]byte{
		rawPublish("ok/\xff", 0, payload("BADUTF", 300)),
		func() []byte { p := rawPublish("ok/q", 1, payload("QOS3", 300)); p[0] |= 0x06; return p }(),
		append([]byte{0x30, 0xff, 0x7f, 0, 2, 'o', 'k'}, payload("TRUNC", 300)...),
	} {
		conn := dial()
		_, _ = conn.Write(rawConnect(fmt.Sprintf("malformed-%d", i), user, cred.Password))
		_, _ = conn.Write(m)
		_ = conn.(*net.TCPConn).CloseWrite()
		drainConn(conn)
	}
	time.Sleep(300 * time.Millisecond)

	// 3,000 errors from one device: at most 20 lines.
	before := strings.Count(p.stderr.String(), "\n")
	noisy, code := connect5(t, pp.mqtt, "noisy", user, cred.Password, nil)
	if code != 0 {
		t.Fatalf("refused 0x%02x", code)
	}
	for i := range 3000 {
		if pr, err := noisy.Publish(ctx, &paho.Publish{Topic: "forbidden/n", QoS: 1, Payload: []byte("n")}); pr == nil || pr.ReasonCode != 0x87 {
			t.Fatalf("publish %d: %+v %v", i, pr, err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	added := strings.Count(p.stderr.String(), "\n") - before
	t.Logf("3,000 refused publishes from one device: %d log lines", added)
	if added > 20 {
		t.Errorf("3,000 refused publishes added %d log lines, want at most 20", added)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out := p.stderr.String()
	for _, s := range secrets {
		if len(s) < 12 {
			t.Fatalf("secret %q too short to look for", s)
		}
		for _, f := range secretForms(s) {
			if i := strings.Index(out, f); i >= 0 {
				lo := strings.LastIndexByte(out[:i], '\n') + 1
				hi := min(len(out), i+200)
				t.Errorf("the log holds %.40q (as %.40q): %s", s, f, out[lo:hi])
				break
			}
		}
	}
	for _, want := range []string{
		`"msg":"refused CONNECT","instance":"` + inst.ID + `","client":"bad5-0"`,
		`"msg":"refused PUBLISH","instance":"` + inst.ID + `","client":"acl5"`,
		`"msg":"refused PUBLISH","instance":"` + inst.ID + `","client":"acl3"`,
		`"error":"protocol violation: second connect packet","client":"` + inst.ID + `/double"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"msg":"refused `) {
			for _, f := range []string{`"instance":"` + inst.ID + `"`, `"client":`, `"packet_type":`, `"reason":`} {
				if !strings.Contains(line, f) && !strings.Contains(line, `"instance":""`) {
					t.Errorf("refusal line without %s: %s", f, line)
				}
			}
		}
	}
}
