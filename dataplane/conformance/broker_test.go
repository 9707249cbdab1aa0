package conformance

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/gateway"
	"github.com/aeriemq/aerie/dataplane/store"
)

// broker is a server under test.
type broker struct {
	name  string
	addr  string
	aerie bool
}

// startAerie starts a node with its message store and a default instance
// that admits anonymous devices (every topic allowed), as `aerie serve
// --default-instance` runs it.
func startAerie(t testing.TB) *broker {
	t.Helper()
	st := configsync.NewState()
	snap := config.Snapshot{Revision: 1, NodeID: "n-conf", Instances: []config.Instance{{ID: "i-conf", OrgID: "o-conf",
		Status: config.StatusRunning, AllowAnonymous: true,
		ACL: []config.ACLRule{{ID: "r-all", Effect: config.EffectAllow, Action: config.ActionAll, Filter: "#"}}}}}
	if err := st.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &snap}); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{MQTTAddr: "127.0.0.1:0", Config: st, DefaultInstance: "i-conf", Store: s,
		MinKeepalive: time.Second, Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close(); s.Close() })
	return &broker{name: "aerie", addr: gw.MQTTAddr(), aerie: true}
}

// testLog discards the node's log unless AERIE_CONFORMANCE_LOG=1.
func testLog() *slog.Logger {
	if os.Getenv("AERIE_CONFORMANCE_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startMosquitto runs the system's mosquitto (make deps installs it) on a
// free loopback port with anonymous access.
func startMosquitto(t testing.TB) *broker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		t.Fatalf("mosquitto is not installed (make deps): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n", port)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &broker{name: "mosquitto", addr: addr}
}

// uniq returns a short random token for client IDs and topics, so checks
// running in parallel never see each other's messages.
func uniq() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func strp(s string) *string { return &s }

// connectOK connects and requires CONNACK success.
func connectOK(t testing.TB, b *broker, v byte, o connOpts) (*client, *packet) {
	t.Helper()
	c := dial(t, b, v)
	c.send(connectPacket(v, o))
	ack := c.expect(tConnack)
	if ack.rc != 0 {
		t.Fatalf("CONNACK %#x, want success", ack.rc)
	}
	return c, ack
}

// subscribeOK subscribes and requires every filter granted.
func (c *client) subscribeOK(id uint16, subs ...sub) {
	c.t.Helper()
	c.send(subscribePacket(c.v, id, nil, subs...))
	ack := c.expectSkipping(tSuback)
	if ack.id != id || len(ack.codes) != len(subs) {
		c.t.Fatalf("SUBACK %s for %d filters", ack, len(subs))
	}
	for i, code := range ack.codes {
		if code >= 0x80 {
			c.t.Fatalf("subscription %q refused: %#x", subs[i].filter, code)
		}
	}
}

// publishOK publishes and completes the QoS handshake as a publisher.
func (c *client) publishOK(p pub) {
	c.t.Helper()
	c.send(publishPacket(c.v, p))
	switch p.qos {
	case 1:
		ack := c.expectSkipping(tPuback)
		if ack.id != p.id || ack.rc >= 0x80 {
			c.t.Fatalf("PUBACK %s", ack)
		}
	case 2:
		rec := c.expectSkipping(tPubrec)
		if rec.id != p.id || rec.rc >= 0x80 {
			c.t.Fatalf("PUBREC %s", rec)
		}
		c.send(ackPacket(tPubrel, p.id))
		comp := c.expectSkipping(tPubcomp)
		if comp.id != p.id {
			c.t.Fatalf("PUBCOMP %s", comp)
		}
	}
}

// expectSkipping reads packets until one of type typ, acknowledging and
// skipping PUBLISHes on the way (a client that also subscribes).
func (c *client) expectSkipping(typ byte) *packet {
	c.t.Helper()
	var skipped []*packet
	defer func() { c.pending = append(c.pending, skipped...) }()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		p := c.next(time.Until(deadline))
		if p.typ == typ {
			return p
		}
		if c.completePubrel(p) {
			continue
		}
		if p.typ != tPublish {
			c.t.Fatalf("want packet type %d, got %s", typ, p)
		}
		skipped = append(skipped, p)
	}
	c.t.Fatalf("no packet type %d", typ)
	return nil
}

// next reads one packet within d or fails.
func (c *client) next(d time.Duration) *packet {
	c.t.Helper()
	p, err := c.read(d)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

// recvPublish reads the next PUBLISH (acknowledging it as a QoS 1/2
// receiver unless noAck).
func (c *client) recvPublish(noAck bool) *packet {
	c.t.Helper()
	for {
		p := c.next(3 * time.Second)
		if c.completePubrel(p) {
			continue
		}
		if p.typ != tPublish {
			c.t.Fatalf("want PUBLISH, got %s", p)
		}
		if !noAck {
			c.ackPublish(p)
		}
		return p
	}
}

func (c *client) ackPublish(p *packet) {
	c.t.Helper()
	switch p.qos {
	case 1:
		c.send(ackPacket(tPuback, p.id))
	case 2:
		c.send(ackPacket(tPubrec, p.id)) // PUBREL is answered where it is read
	}
}

// completePubrel answers a server's PUBREL with PUBCOMP; it reports
// whether p was one.
func (c *client) completePubrel(p *packet) bool {
	if p.typ != tPubrel {
		return false
	}
	c.send(ackPacket(tPubcomp, p.id))
	return true
}

// disconnect sends DISCONNECT (normal) and closes.
// disconnect sends DISCONNECT and waits (up to 2 s) for the server to
// close the connection, so that what the test does next happens after the
// server ended it: a message published then is queued for the session, not
// an attempt to deliver it to this connection (which the next resume would
// rightly resend with DUP 1).
func (c *client) disconnect() {
	c.send(disconnectPacket(c.v, 0))
	_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, c.r)
	_ = c.conn.Close()
}

// drop closes the connection without DISCONNECT.
func (c *client) drop() { _ = c.conn.Close() }

func versionName(v byte) string {
	if v == 5 {
		return "5.0"
	}
	return "3.1.1"
}
