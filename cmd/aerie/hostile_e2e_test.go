package main_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// procStatusKiB reads a "<field>: N kB" line of /proc/<pid>/status.
func procStatusKiB(t testing.TB, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// hostileSocket opens a connection over transport ("mqtt", "mqtts", "ws",
// "wss"), sends a CONNECT header claiming 256 MiB and keeps streaming up
// to 256 KiB more in 16 KiB pieces. It reports whether the node closed the
// connection within 5 s (a write or read failed), which it must do after
// the 5-byte header without reading the rest.
func hostileSocket(transport, addr string) (closedByNode bool, err error) {
	insecure := &tls.Config{InsecureSkipVerify: true} // the node's development certificate
	claim := []byte{0x10, 0xff, 0xff, 0xff, 0x7f}
	chunk := make([]byte, 16<<10)
	deadline := time.Now().Add(5 * time.Second)
	var write func([]byte) error
	var closeFn func() error
	var readFailed func() bool
	switch transport {
	case "mqtt", "mqtts":
		var c net.Conn
		if transport == "mqtt" {
			c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		} else {
			c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, insecure)
		}
		if err != nil {
			return false, err
		}
		_ = c.SetDeadline(deadline)
		write = func(p []byte) error { _, err := c.Write(p); return err }
		closeFn = c.Close
		readFailed = func() bool { _, err := c.Read(make([]byte, 1)); return !isTimeout(err) }
	case "ws", "wss":
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: insecure, HandshakeTimeout: 5 * time.Second}
		c, _, err := d.Dial(transport+"://"+addr+"/mqtt", nil)
		if err != nil {
			return false, err
		}
		_ = c.SetReadDeadline(deadline)
		_ = c.SetWriteDeadline(deadline)
		write = func(p []byte) error { return c.WriteMessage(websocket.BinaryMessage, p) }
		closeFn = c.Close
		readFailed = func() bool { _, _, err := c.ReadMessage(); return !isTimeout(err) }
	}
	defer closeFn()
	if err := write(claim); err != nil {
		return true, nil
	}
	for sent := 0; sent < 256<<10; sent += len(chunk) {
		if err := write(chunk); err != nil {
			return true, nil // closed by the node
		}
		time.Sleep(10 * time.Millisecond)
	}
	return readFailed(), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestHostileConnectsBoundedMemory (issue 13): against `aerie serve`,
// 200 unauthenticated sockets (50 each over TCP, TLS, WebSocket and secure
// WebSocket) each claiming a 256 MiB CONNECT and streaming on raise the
// node's resident memory (peak, VmHWM of the aerie process) by less than
// 32 MiB in total, each is closed by the node, and meanwhile a device
// connects and its messages reach a subscriber. The MQTT 5 CONNACK
// announces the instance's packet bound (Free plan: max_payload_bytes
// 65,536 + 65,536 header room), and a CONNECT with Receive Maximum 0 is
// refused with 0x82.
func TestHostileConnectsBoundedMemory(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	pp := freePorts(t)
	mqtts, wss := freeAddr(t), freeAddr(t)
	p := start(t, cleanEnv("DATABASE_URL="+dsn), "serve", "--data-dir", newDataDir(t), "--http-addr", pp.http,
		"--mqtt-addr", pp.mqtt, "--ws-addr", pp.ws, "--mqtts-addr", mqtts, "--wss-addr", wss)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	c, org := signup(t, base, "hostile@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "hostile"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	var cred credOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "d"}, 201, &cred)
	time.Sleep(300 * time.Millisecond)

	// The subscriber, with a look at its CONNACK.
	var received atomic.Int64
	conn, err := net.DialTimeout("tcp", pp.mqtt, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sub := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(paho.PublishReceived) (bool, error) { received.Add(1); return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ca, err := sub.Connect(ctx, &paho.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: cred.MQTTUsername, PasswordFlag: true, Password: []byte(cred.Password)})
	if err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	defer sub.Disconnect(&paho.Disconnect{})
	if ca.Properties == nil || ca.Properties.MaximumPacketSize == nil || *ca.Properties.MaximumPacketSize != 65536+65536 {
		t.Fatalf("CONNACK properties %+v: want Maximum Packet Size 131072", ca.Properties)
	}
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ok/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	t.Run("Receive Maximum 0 is refused with 0x82", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", pp.mqtt, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		user, pass := cred.MQTTUsername, cred.Password
		vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xc2, 0, 30, 3, 0x21, 0, 0, 0, 2, 'r', 'm'}
		vh = append(append(vh, byte(len(user)>>8), byte(len(user))), user...)
		vh = append(append(vh, byte(len(pass)>>8), byte(len(pass))), pass...)
		if len(vh) > 127 {
			t.Fatalf("CONNECT of %d bytes needs a longer length", len(vh))
		}
		if _, err := c.Write(append([]byte{0x10, byte(len(vh))}, vh...)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		ack := make([]byte, 4)
		if _, err := io.ReadFull(bufio.NewReader(c), ack); err != nil || ack[0] != 0x20 || ack[3] != 0x82 {
			t.Fatalf("CONNACK % x (%v), want reason 0x82", ack, err)
		}
	})

	// Warm up (first TLS handshakes, WebSocket upgrades, goroutine stacks)
	// before the baseline.
	addrs := map[string]string{"mqtt": pp.mqtt, "mqtts": mqtts, "ws": pp.ws, "wss": wss}
	for tr, a := range addrs {
		if _, err := hostileSocket(tr, a); err != nil {
			t.Fatal(err)
		}
	}
	pid := p.cmd.Process.Pid
	// Reset the peak (VmHWM) to the current resident size.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS: %v", err)
	}
	baseRSS := procStatusKiB(t, pid, "VmRSS")

	var wg sync.WaitGroup
	var notClosed, failed atomic.Int64
	var firstErr atomic.Value
	startAt := time.Now()
	for _, tr := range []string{"mqtt", "mqtts", "ws", "wss"} {
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				closed, err := hostileSocket(tr, addrs[tr])
				switch {
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %w", tr, err))
				case !closed:
					notClosed.Add(1)
				}
			}()
		}
	}
	// Meanwhile a device connects and publishes.
	dev, code := connect5(t, pp.mqtt, "dev", cred.MQTTUsername, cred.Password, nil)
	if code != 0 {
		t.Fatalf("device refused 0x%02x during the attack", code)
	}
	for i := range 20 {
		if _, err := dev.Publish(ctx, &paho.Publish{Topic: "ok/" + strconv.Itoa(i), QoS: 1, Payload: []byte("hello")}); err != nil {
			t.Fatalf("publish during the attack: %v", err)
		}
	}
	wg.Wait()
	attack := time.Since(startAt)
	peakRSS := procStatusKiB(t, pid, "VmHWM")
	deadline := time.Now().Add(10 * time.Second)
	for received.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	grew := peakRSS - baseRSS
	t.Logf("200 hostile sockets in %s: RSS %d KiB before, peak %d KiB (+%d KiB)", attack.Round(time.Millisecond), baseRSS, peakRSS, grew)
	if failed.Load() > 0 {
		t.Fatalf("%d hostile sockets could not connect: %v", failed.Load(), firstErr.Load())
	}
	if notClosed.Load() > 0 {
		t.Fatalf("%d hostile sockets were not closed by the node", notClosed.Load())
	}
	if grew >= 32<<10 {
		t.Fatalf("the node's resident memory grew by %d KiB, want < 32 MiB", grew)
	}
	if n := received.Load(); n != 20 {
		t.Fatalf("the subscriber got %d of 20 messages published during the attack", n)
	}
}
