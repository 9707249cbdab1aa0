package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
	"github.com/aeriemq/aerie/internal/safelog"
)

// logBuf collects a node's log lines (JSON, DEBUG level).
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines parses the log; a line that is not JSON fails the test.
func (l *logBuf) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// logNode is a node (gateway with its store) whose log is kept, at DEBUG.
type logNode struct {
	gw   *Gateway
	log  *logBuf
	priv ed25519.PrivateKey
}

func marker(kind string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return kind + "MARK" + strings.ToUpper(hex.EncodeToString(b))
}

func newLogNode(t *testing.T, goodPassword string, limit ...safelog.LimitOptions) *logNode {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := configsync.NewState()
	snap := config.Snapshot{Revision: 1, NodeID: "n-log", Instances: []config.Instance{{
		ID: "i-log", OrgID: "o-log", Status: config.StatusRunning,
		Quotas: config.Quotas{MaxPayloadBytes: 4096, MaxPublishPerSecondPerClient: 5},
		ACL: []config.ACLRule{
			{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"},
			{ID: "r-deny", Effect: config.EffectDeny, Action: config.ActionPublish, Filter: "forbidden/#"},
		},
		Credentials: []config.Credential{{ID: "c-1", Username: "dev", SecretSHA256: sum(goodPassword), Enabled: true}},
		TokenKeys:   []config.TokenKey{{KID: "k1", Algorithm: "EdDSA", PublicKey: pub}},
	}}}
	if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuf{}
	log := slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := Options{MQTTAddr: "127.0.0.1:0", Config: st, Store: s, Log: log}
	if len(limit) > 0 {
		o.LogLimit = limit[0]
	}
	gw, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close(); s.Close() })
	return &logNode{gw: gw, log: lb, priv: priv}
}

func (n *logNode) token(t *testing.T, jti string, exp time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": "aerie", "aud": "i-log", "jti": jti,
		"iat": time.Now().Add(-time.Hour).Unix(), "exp": exp.Unix()})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(n.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// raw opens a socket and writes pk (already encoded) to it.
func (n *logNode) raw(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", n.gw.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// drain reads what the server sends until it closes or goes quiet.
func drain(c net.Conn, quiet time.Duration) {
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(quiet))
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func encode(t *testing.T, pk packets.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&b)
	case packets.Publish:
		err = pk.PublishEncode(&b)
	default:
		t.Fatalf("encode: type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func connectPacket(version byte, clientID, user, pass string) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: clientID,
			UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pass)}}
}

func publishPacket(version byte, topic string, qos byte, id uint16, payload []byte) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, ProtocolVersion: version,
		TopicName: topic, PacketID: id, Payload: payload}
}

// encodings are the forms a secret could take in a log line: as is, base64
// (at each alignment: a secret inside a larger base64 blob starts on one of
// three byte offsets), hex, and Go's %v of a byte slice.
func encodings(secret string) []string {
	out := []string{secret, hex.EncodeToString([]byte(secret)), strings.ToUpper(hex.EncodeToString([]byte(secret)))}
	for k := 0; k < 3; k++ {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			s := enc.EncodeToString([]byte(secret[k:]))
			out = append(out, s[:len(s)-4]) // the last group depends on what follows
		}
	}
	dec := strings.Trim(fmt.Sprint([]byte(secret)), "[]")
	return append(out, dec)
}

func assertNoSecrets(t *testing.T, log string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, e := range encodings(s) {
			if i := strings.Index(log, e); i >= 0 {
				start := strings.LastIndexByte(log[:i], '\n') + 1
				end := strings.IndexByte(log[i:], '\n')
				if end < 0 {
					end = len(log) - i
				}
				line := log[start : i+end]
				if len(line) > 400 {
					line = line[:400] + "..."
				}
				t.Errorf("the log holds %q (as %q): %s", s, e, line)
				break
			}
		}
	}
}

// TestLogHoldsNoSecrets (issue 13, item 2): a scripted run of hostile
// devices, with distinctive markers as passwords, tokens and payloads,
// leaves a DEBUG log that holds none of them (in any encoding), and every
// refusal's line names the client, instance, packet type and reason.
func TestLogHoldsNoSecrets(t *testing.T) {
	good := marker("GOODPW")
	n := newLogNode(t, good)
	var secrets []string
	secret := func(kind string) string { s := marker(kind); secrets = append(secrets, s); return s }
	payload := func(kind string, size int) []byte {
		m := secret(kind)
		return bytes.Repeat([]byte(m+" "), size/(len(m)+1)+1)[:size]
	}
	ctx := context.Background()
	user := "dev@i-log"

	// Double CONNECT on one connection, MQTT 3.1.1 and 5: the second
	// carries the password again and ends the connection.
	for _, v := range []byte{4, 5} {
		c := n.raw(t)
		cp := encode(t, connectPacket(v, fmt.Sprintf("double-v%d", v), user, good))
		_, _ = c.Write(cp)
		_, _ = c.Write(cp)
		drain(c, time.Second)
	}
	// Bad passwords (v3.1.1 and v5) and a malformed password field.
	bad := secret("BADPW")
	if _, err := (&bundle{gw: n.gw}).v3(t, "badpw-v3", user, bad, nil); err == nil {
		t.Fatal("a bad password was accepted (v3.1.1)")
	}
	b := &bundle{gw: n.gw}
	if _, ca, err := b.v5(t, "badpw-v5", user, secret("BADPW")); err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("bad password (v5): %+v %v", ca, err)
	}
	// Device tokens: garbage, expired, and one for an unknown key.
	for i, tok := range []string{
		secret("GARBAGETOKEN"),
		n.token(t, "jti-expired", time.Now().Add(-time.Minute)),
		n.token(t, "jti-expired2", time.Now().Add(-10*time.Second)) + secret("TAIL"),
	} {
		secrets = append(secrets, tok, tok[strings.LastIndexByte(tok, '.')+1:]) // the token and its signature
		if _, ca, err := b.v5(t, fmt.Sprintf("tok-%d", i), config.DeviceTokenUsername+"@i-log", tok); err == nil {
			t.Fatalf("token %d accepted: %+v", i, ca)
		}
		if _, err := b.v3(t, fmt.Sprintf("tok3-%d", i), config.DeviceTokenUsername+"@i-log", tok, nil); err == nil {
			t.Fatalf("token %d accepted (v3.1.1)", i)
		}
	}
	// A will on a denied topic, with a payload marker.
	{
		c := n.raw(t)
		pk := connectPacket(4, "will-denied", user, good)
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, "forbidden/will", payload("WILL", 300)
		_, _ = c.Write(encode(t, pk))
		drain(c, 500*time.Millisecond)
	}
	// ACL-denied publishes: v5 QoS 1 (PUBACK 0x87) and QoS 0, v3.1.1 QoS 1 and 0.
	v5, _, err := b.v5(t, "acl-v5", user, good)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := v5.c.Publish(ctx, &paho.Publish{Topic: "forbidden/a", QoS: 1, Payload: payload("ACLV5", 1000)})
	if err != nil && pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("denied v5 publish: %+v %v", pr, err)
	}
	_, _ = v5.c.Publish(ctx, &paho.Publish{Topic: "forbidden/b", QoS: 0, Payload: payload("ACLV5Q0", 1000)})
	v3, err := b.v3(t, "acl-v3", user, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	v3.Publish("forbidden/c", 1, false, payload("ACLV3", 1000)).WaitTimeout(5 * time.Second)
	v3.Publish("forbidden/d", 0, false, payload("ACLV3Q0", 1000)).WaitTimeout(5 * time.Second)
	// Over-quota publishes (5 a second per client): held back (back-pressure,
	// issue 14), every one acknowledged with success; their payloads must
	// not reach the log either.
	q5, _, err := b.v5(t, "quota-v5", user, good)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[byte]int{}
	for range 10 {
		pr, err := q5.c.Publish(ctx, &paho.Publish{Topic: "ok/q", QoS: 1, Payload: payload("QUOTAV5", 500)})
		if err != nil && pr == nil {
			t.Fatal(err)
		}
		codes[pr.ReasonCode]++
	}
	if codes[0] != 10 {
		t.Fatalf("publishes over the rate were not all held back and accepted: %v", codes)
	}
	q3, err := b.v3(t, "quota-v3", user, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		q3.Publish("ok/q", 1, false, payload("QUOTAV3", 500)).WaitTimeout(5 * time.Second)
	}
	// Oversize: over max_payload_bytes (v5 DISCONNECT 0x95, v3.1.1 closed).
	big5, _, err := b.v5(t, "big-v5", user, good)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = big5.c.Publish(ctx, &paho.Publish{Topic: "ok/big", QoS: 0, Payload: payload("BIGV5", 8000)})
	expectDisconnect(t, big5, 0x95)
	{
		c := n.raw(t)
		_, _ = c.Write(encode(t, connectPacket(4, "big-v3", user, good)))
		_, _ = c.Write(encode(t, publishPacket(4, "ok/big", 1, 1, payload("BIGV3", 8000))))
		drain(c, time.Second)
	}
	// Malformed packets after a good CONNECT: a PUBLISH whose topic is
	// invalid UTF-8 next to a payload marker, a PUBLISH with QoS 3, a
	// reserved packet type, a length past the end; and a CONNECT whose
	// protocol name is wrong (its password a marker).
	malformed := [][]byte{
		func() []byte {
			p := encode(t, publishPacket(4, "ok/\xff\xfe", 0, 0, payload("BADUTF", 200)))
			return p
		}(),
		func() []byte {
			p := encode(t, publishPacket(4, "ok/q3", 1, 7, payload("QOS3", 200)))
			p[0] |= 0x06 // QoS 3
			return p
		}(),
		append([]byte{0x00, 0x40}, payload("RESERVED", 64)...),
		append([]byte{0x30, 0x7f, 0x00, 0x04, 'o', 'k', '/', 'x'}, payload("SHORT", 40)...),
	}
	for i, m := range malformed {
		for _, v := range []byte{4, 5} {
			c := n.raw(t)
			_, _ = c.Write(encode(t, connectPacket(v, fmt.Sprintf("malformed-%d-v%d", i, v), user, good)))
			_, _ = c.Write(m)
			if i == 3 {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			drain(c, 500*time.Millisecond)
		}
	}
	{
		c := n.raw(t)
		pk := connectPacket(4, "badproto", user, secret("PROTOPW"))
		pk.Connect.ProtocolName = []byte("MQTX")
		_, _ = c.Write(encode(t, pk))
		drain(c, 500*time.Millisecond)
	}
	// Every refusal above has been answered; let the log settle.
	time.Sleep(200 * time.Millisecond)

	log := n.log.String()
	assertNoSecrets(t, log, append(secrets, good)...)

	lines := n.log.lines(t)
	find := func(msg, client string) map[string]any {
		for _, l := range lines {
			if l["msg"] == msg && l["client"] == client {
				return l
			}
		}
		t.Errorf("no %q line for client %q in:\n%s", msg, client, log)
		return nil
	}
	want := func(l map[string]any, packetType, reason string) {
		t.Helper()
		if l == nil {
			return
		}
		if l["instance"] != "i-log" || l["packet_type"] != packetType || !strings.Contains(fmt.Sprint(l["reason"], l["error"]), reason) {
			t.Errorf("line %v: want instance i-log, packet_type %s, reason %q", l, packetType, reason)
		}
	}
	want(find("refused CONNECT", "badpw-v3"), "CONNECT", "bad username or password")
	want(find("refused CONNECT", "badpw-v5"), "CONNECT", "bad username or password")
	want(find("refused CONNECT", "tok-1"), "CONNECT", "not authorized")
	want(find("refused CONNECT", "will-denied"), "CONNECT", "topic name invalid")
	want(find("refused PUBLISH", "acl-v5"), "PUBLISH", "not authorized")
	want(find("refused PUBLISH", "acl-v3"), "PUBLISH", "not authorized")
	want(find("error processing packet", "i-log/double-v4"), "Connect", "second connect")
	want(find("error processing packet", "i-log/double-v5"), "Connect", "second connect")
	want(find("disconnected the client", "big-v5"), "DISCONNECT", "packet too large")
	for _, l := range lines {
		if strings.HasPrefix(fmt.Sprint(l["msg"]), "refused ") {
			want(l, strings.TrimPrefix(fmt.Sprint(l["msg"]), "refused "), "")
			if l["client"] == "" || l["reason"] == "" {
				t.Errorf("refusal without client or reason: %v", l)
			}
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
}

// TestLogIsRateLimitedPerClient (issue 13, item 2): a device that causes
// 3,000 errors produces at most 20 log lines (MQTT 5 QoS 1 and MQTT 3.1.1
// publishes refused by the ACL, and failed logins), while another device's
// refusal is still logged.
func TestLogIsRateLimitedPerClient(t *testing.T) {
	good := marker("GOODPW")
	n := newLogNode(t, good)
	b := &bundle{gw: n.gw}
	ctx := context.Background()
	count := func(client string) int {
		c := 0
		for _, l := range n.log.lines(t) {
			if cl, _ := l["client"].(string); cl == client || cl == "i-log/"+client {
				c++
			}
		}
		return c
	}
	// Every line the node writes while one device misbehaves counts, whether
	// it names the device or only its address.
	total := func() int { return len(n.log.lines(t)) }
	t.Run("v5 QoS 1", func(t *testing.T) {
		v, _, err := b.v5(t, "noisy-v5", "dev@i-log", good)
		if err != nil {
			t.Fatal(err)
		}
		before := total()
		for i := range 3000 {
			pr, err := v.c.Publish(ctx, &paho.Publish{Topic: "forbidden/x", QoS: 1, Payload: []byte("p")})
			if err != nil && pr == nil || pr.ReasonCode != 0x87 {
				t.Fatalf("publish %d: %+v %v", i, pr, err)
			}
		}
		c, all := count("noisy-v5"), total()-before
		if c == 0 || all > 20 {
			t.Fatalf("3,000 refusals wrote %d lines (%d naming the client), want 1..20", all, c)
		}
		t.Logf("%d lines (%d naming the client)", all, c)
	})
	t.Run("v3.1.1 QoS 0", func(t *testing.T) {
		v, err := b.v3(t, "noisy-v3", "dev@i-log", good, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := total()
		for range 3000 {
			v.Publish("forbidden/x", 0, false, []byte("p"))
		}
		// QoS 0 has no answer: an allowed QoS 1 publish's PUBACK shows the
		// node has read all of them.
		if tok := v.Publish("ok/x", 1, false, []byte("p")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal("publish after the flood")
		}
		c, all := count("noisy-v3"), total()-before
		if c == 0 || all > 20 {
			t.Fatalf("3,000 refusals wrote %d lines (%d naming the client), want 1..20", all, c)
		}
		t.Logf("%d lines (%d naming the client)", all, c)
	})
	t.Run("failed logins", func(t *testing.T) {
		conn := func() {
			c, err := net.Dial("tcp", n.gw.MQTTAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, _ = c.Write(encode(t, connectPacket(4, "noisy-login", "dev@i-log", "wrong")))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.ReadFull(c, make([]byte, 4))
		}
		before := total()
		for range 300 {
			conn()
		}
		time.Sleep(100 * time.Millisecond) // the last connections' ends
		c, all := count("noisy-login"), total()-before
		if c == 0 || all > 20 {
			t.Fatalf("300 failed logins wrote %d lines (%d naming the client), want 1..20", all, c)
		}
		t.Logf("%d lines (%d naming the client)", all, c)
	})
	// Another device is not silenced by the noisy ones.
	v, err := b.v3(t, "other", "dev@i-log", good, nil)
	if err != nil {
		t.Fatal(err)
	}
	v.Publish("forbidden/y", 1, false, []byte("p")).WaitTimeout(5 * time.Second)
	if !waitFor(t, 2*time.Second, func() bool { return count("other") > 0 }) {
		t.Fatal("another client's refusal was not logged")
	}
	var _ mqtt3.Client = v
}

// TestLogSummarisesSuppressedLines: at the end of a client's window one line
// counts what was suppressed (a 2 s window here; a minute by default).
func TestLogSummarisesSuppressedLines(t *testing.T) {
	good := marker("GOODPW")
	n := newLogNode(t, good, safelog.LimitOptions{Window: 2 * time.Second})
	b := &bundle{gw: n.gw}
	v, _, err := b.v5(t, "summed", "dev@i-log", good)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if pr, err := v.c.Publish(context.Background(), &paho.Publish{Topic: "forbidden/x", QoS: 1, Payload: []byte("p")}); pr == nil || pr.ReasonCode != 0x87 {
			t.Fatalf("publish: %+v %v", pr, err)
		}
	}
	var sum map[string]any
	waitFor(t, 6*time.Second, func() bool {
		for _, l := range n.log.lines(t) {
			if l["msg"] == "log lines suppressed" && l["client"] == "i-log/summed" && l["level"] == "INFO" {
				sum = l
				return true
			}
		}
		return false
	})
	// 50 refusals: 50 INFO lines, of which 5 written; the DEBUG ones are
	// summed on their own.
	if sum == nil || sum["suppressed"] != float64(45) {
		t.Fatalf("summary %v; log:\n%s", sum, n.log.String())
	}
}
