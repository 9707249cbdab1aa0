package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/aeriemq/aerie/dataplane/config"
)

// stream is a device's byte stream to the node over any transport.
type stream interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
}

// wsStream is an MQTT byte stream over a WebSocket client connection; each
// Write is one binary message.
type wsStream struct {
	c *websocket.Conn
	r io.Reader
}

func (s *wsStream) Read(p []byte) (int, error) {
	for {
		if s.r == nil {
			_, r, err := s.c.NextReader()
			if err != nil {
				return 0, err
			}
			s.r = r
		}
		n, err := s.r.Read(p)
		if errors.Is(err, io.EOF) {
			s.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (s *wsStream) Write(p []byte) (int, error) {
	if err := s.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
func (s *wsStream) Close() error                      { return s.c.Close() }
func (s *wsStream) SetReadDeadline(t time.Time) error { return s.c.SetReadDeadline(t) }

// dialStream opens a stream over transport "mqtt", "mqtts", "ws" or "wss".
func dialStream(t testing.TB, transport, addr string) stream {
	t.Helper()
	insecure := &tls.Config{InsecureSkipVerify: true} // the test's own development certificate
	switch transport {
	case "mqtt":
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn)
	case "mqtts":
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, insecure)
		if err != nil {
			t.Fatal(err)
		}
		return c
	case "ws", "wss":
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: insecure, HandshakeTimeout: 5 * time.Second}
		c, _, err := d.Dial(transport+"://"+addr+"/mqtt", nil)
		if err != nil {
			t.Fatal(err)
		}
		return &wsStream{c: c}
	}
	t.Fatalf("unknown transport %q", transport)
	return nil
}

// varint encodes an MQTT variable byte integer.
func varint(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// rawConnect is a CONNECT (version 4 or 5; props are the raw MQTT 5
// properties) with a clean session and keepalive 30.
func rawConnect(version byte, clientID, user, pass string, props []byte) []byte {
	vh := append(mqttString("MQTT"), version)
	flags := byte(0x02)
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	vh = append(vh, flags, 0, 30)
	if version == 5 {
		vh = append(append(vh, varint(len(props))...), props...)
	}
	vh = append(vh, mqttString(clientID)...)
	if user != "" {
		vh = append(vh, mqttString(user)...)
	}
	if pass != "" {
		vh = append(vh, mqttString(pass)...)
	}
	return append(append([]byte{0x10}, varint(len(vh))...), vh...)
}

// readPacket reads one MQTT packet (type byte, body) within d.
func readPacket(s stream, r *bufio.Reader, d time.Duration) (byte, []byte, error) {
	_ = s.SetReadDeadline(time.Now().Add(d))
	typ, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for {
		b, err := r.ReadByte()
		if err != nil {
			return typ, nil, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	return typ, body, err
}

// expectClosed asserts the node closes the stream within d without
// sending anything.
func expectClosed(t *testing.T, s stream, d time.Duration) {
	t.Helper()
	_ = s.SetReadDeadline(time.Now().Add(d))
	n, err := s.Read(make([]byte, 64))
	var ne net.Error
	switch {
	case n > 0:
		t.Fatalf("the node answered %d bytes instead of closing", n)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("the connection is still open after %s", d)
	case err == nil:
		t.Fatal("read returned nothing and no error")
	}
}

// TestPacketBoundBeforeAuth: over TCP, TLS, WebSocket and secure WebSocket,
// a CONNECT claiming more than the bound (64 KiB by default) closes the
// socket at once, unread and unanswered, as does one that really is larger;
// a CONNECT within the bound is read and answered. A WebSocket frame
// claiming a giant length, and an oversized upgrade request, are refused
// too.
func TestPacketBoundBeforeAuth(t *testing.T) {
	b := newBundle(t)
	cfg, err := TLSConfig("", "", filepath.Join(t.TempDir(), "tls"), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Options{MQTTAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", WSSAddr: "127.0.0.1:0", TLS: cfg,
		Config: b.state, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	addrs := map[string]string{"mqtt": gw.MQTTAddr(), "mqtts": gw.TLSAddr(), "ws": gw.WSAddr(), "wss": gw.WSSAddr()}
	for _, tr := range []string{"mqtt", "mqtts", "ws", "wss"} {
		t.Run(tr, func(t *testing.T) {
			t.Run("a CONNECT claiming 256 MiB is refused unread", func(t *testing.T) {
				s := dialStream(t, tr, addrs[tr])
				defer s.Close()
				if _, err := s.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}); err != nil {
					t.Fatal(err)
				}
				expectClosed(t, s, 3*time.Second)
			})
			t.Run("a CONNECT just over the bound is refused", func(t *testing.T) {
				s := dialStream(t, tr, addrs[tr])
				defer s.Close()
				// 65,536 bytes with its 4-byte fixed header.
				pk := rawConnect(4, "big", "dev@i-aaaa", strings.Repeat("p", DefaultMaxConnectBytes-32), nil)
				if len(pk) != DefaultMaxConnectBytes+1 {
					t.Fatalf("test CONNECT is %d bytes", len(pk))
				}
				_, _ = s.Write(pk) // the node may close while it is being sent
				expectClosed(t, s, 3*time.Second)
			})
			t.Run("a CONNECT within the bound is answered", func(t *testing.T) {
				s := dialStream(t, tr, addrs[tr])
				defer s.Close()
				pk := rawConnect(4, "big", "dev@i-aaaa", strings.Repeat("p", DefaultMaxConnectBytes-33), nil)
				if len(pk) != DefaultMaxConnectBytes {
					t.Fatalf("test CONNECT is %d bytes", len(pk))
				}
				if _, err := s.Write(pk); err != nil {
					t.Fatal(err)
				}
				typ, body, err := readPacket(s, bufio.NewReader(s), 5*time.Second)
				if err != nil || typ != 0x20 || len(body) != 2 || body[1] != 0x04 {
					t.Fatalf("got packet 0x%02x %x (%v), want CONNACK 0x04 bad password", typ, body, err)
				}
			})
		})
	}
	t.Run("a WebSocket frame claiming 1 TiB is refused from its header", func(t *testing.T) {
		s := dialStream(t, "ws", addrs["ws"]).(*wsStream)
		defer s.Close()
		// FIN+binary, masked, 64-bit length 2^40, mask key; no payload.
		frame := []byte{0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4}
		if _, err := s.c.UnderlyingConn().Write(frame); err != nil {
			t.Fatal(err)
		}
		_ = s.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _, err := s.c.ReadMessage()
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Fatalf("read: %v, want close 1009 (message too big)", err)
		}
	})
	t.Run("an upgrade request over the bound is refused", func(t *testing.T) {
		req, _ := http.NewRequest("GET", "http://"+addrs["ws"]+"/mqtt", nil)
		req.Header.Set("X-Padding", strings.Repeat("a", 2*DefaultMaxConnectBytes))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", resp.StatusCode)
		}
	})
}

// TestPacketBoundAfterAuth: once authenticated, a device may send packets
// up to its instance's max_payload_bytes plus header room, announced in the
// MQTT 5 CONNACK; a larger one is refused from its fixed header, before its
// body is sent (MQTT 5: DISCONNECT 0x95, 3.1.1: closed). A quota change
// applies to live connections.
func TestPacketBoundAfterAuth(t *testing.T) {
	b := newBundle(t)
	b.setQuotas(t, "i-aaaa", config.Quotas{MaxPayloadBytes: 1000})
	want := uint32(1000 + packetHeaderRoom)

	t.Run("MQTT 5 CONNACK announces Maximum Packet Size", func(t *testing.T) {
		_, ca, err := b.v5with(t, "mps", "dev@i-aaaa", "pw-dev", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ca.Properties == nil || ca.Properties.MaximumPacketSize == nil || *ca.Properties.MaximumPacketSize != want {
			t.Fatalf("CONNACK properties %+v, want Maximum Packet Size %d", ca.Properties, want)
		}
	})
	connect := func(t *testing.T, version byte, id string) (stream, *bufio.Reader) {
		s := dialStream(t, "mqtt", b.gw.MQTTAddr())
		t.Cleanup(func() { s.Close() })
		if _, err := s.Write(rawConnect(version, id, "dev@i-aaaa", "pw-dev", nil)); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(s)
		typ, body, err := readPacket(s, r, 5*time.Second)
		if err != nil || typ != 0x20 || len(body) < 2 || body[1] != 0 {
			t.Fatalf("CONNACK 0x%02x %x (%v)", typ, body, err)
		}
		return s, r
	}
	// header is a QoS 1 PUBLISH's fixed header and topic for a payload of n.
	header := func(n int) []byte {
		vh := append(mqttString("t"), 0, 1)
		return append(append([]byte{0x32}, varint(len(vh)+n)...), vh...)
	}
	t.Run("MQTT 5: DISCONNECT 0x95 from the header alone", func(t *testing.T) {
		s, r := connect(t, 5, "big5")
		if _, err := s.Write(header(1 << 20)[:4]); err != nil { // claims 1 MiB, sends none of it
			t.Fatal(err)
		}
		typ, body, err := readPacket(s, r, 3*time.Second)
		if err != nil || typ != 0xe0 || len(body) < 1 || body[0] != 0x95 {
			t.Fatalf("got 0x%02x %x (%v), want DISCONNECT 0x95", typ, body, err)
		}
		if _, _, err := readPacket(s, r, 3*time.Second); !errors.Is(err, io.EOF) {
			t.Fatalf("after DISCONNECT: %v, want EOF", err)
		}
	})
	t.Run("MQTT 3.1.1: closed from the header alone", func(t *testing.T) {
		s, _ := connect(t, 4, "big4")
		if _, err := s.Write(header(int(want))[:4]); err != nil { // one byte over the bound
			t.Fatal(err)
		}
		expectClosed(t, s, 3*time.Second)
	})
	t.Run("a packet at the bound is read (and refused by the payload quota)", func(t *testing.T) {
		s, r := connect(t, 5, "at5")
		vh := append(mqttString("t"), 0, 1, 0) // topic, packet ID, no properties
		n := int(want) - 1 - len(varint(int(want))) - len(vh)
		pk := append(append(append([]byte{0x32}, varint(len(vh)+n)...), vh...), make([]byte, n)...)
		if len(pk) != int(want) {
			t.Fatalf("test packet is %d bytes", len(pk))
		}
		if _, err := s.Write(pk); err != nil {
			t.Fatal(err)
		}
		typ, body, err := readPacket(s, r, 3*time.Second)
		if err != nil || typ != 0xe0 || len(body) < 1 || body[0] != 0x95 {
			t.Fatalf("got 0x%02x %x (%v), want DISCONNECT 0x95", typ, body, err)
		}
		if dropsOf(b, "i-aaaa", DropTooLarge) == 0 {
			t.Fatal("the payload quota did not see the packet")
		}
	})
	t.Run("a raised quota applies to a live connection", func(t *testing.T) {
		var got = make(chan int, 1)
		sub, _, err := b.v5with(t, "sub", "dev@i-aaaa", "pw-dev", nil, func(cc *paho.ClientConfig) {
			cc.OnPublishReceived = append(cc.OnPublishReceived, func(pr paho.PublishReceived) (bool, error) {
				got <- len(pr.Packet.Payload)
				return true, nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.c.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		s, r := connect(t, 5, "raised")
		b.setQuotas(t, "i-aaaa", config.Quotas{MaxPayloadBytes: 200_000})
		payload := bytes.Repeat([]byte("z"), 150_000)
		vh := append(mqttString("t"), 0, 7, 0)
		pk := append(append(append([]byte{0x32}, varint(len(vh)+len(payload))...), vh...), payload...)
		if _, err := s.Write(pk); err != nil {
			t.Fatal(err)
		}
		typ, body, err := readPacket(s, r, 5*time.Second)
		if err != nil || typ != 0x40 || len(body) < 2 || (len(body) > 2 && body[2] != 0) {
			t.Fatalf("got 0x%02x %x (%v), want PUBACK success", typ, body, err)
		}
		select {
		case n := <-got:
			if n != len(payload) {
				t.Fatalf("received %d bytes", n)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the subscriber got nothing")
		}
	})
}

// TestReceiveMaximumZero: an MQTT 5 CONNECT with Receive Maximum 0 is a
// protocol error (CONNACK 0x82); 1 and an absent one are fine.
func TestReceiveMaximumZero(t *testing.T) {
	b := newBundle(t)
	for _, tc := range []struct {
		props []byte
		code  byte
	}{{[]byte{0x21, 0, 0}, 0x82}, {[]byte{0x21, 0, 1}, 0}, {nil, 0}} {
		t.Run(fmt.Sprintf("% x", tc.props), func(t *testing.T) {
			s := dialStream(t, "mqtt", b.gw.MQTTAddr())
			defer s.Close()
			if _, err := s.Write(rawConnect(5, "rm", "dev@i-aaaa", "pw-dev", tc.props)); err != nil {
				t.Fatal(err)
			}
			typ, body, err := readPacket(s, bufio.NewReader(s), 5*time.Second)
			if err != nil || typ != 0x20 || len(body) < 2 || body[1] != tc.code {
				t.Fatalf("got 0x%02x %x (%v), want CONNACK 0x%02x", typ, body, err, tc.code)
			}
		})
	}
}
