package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	"github.com/pires/go-proxyproto"
)

// TestProxyProtocol: a listener behind a load balancer requires a PROXY
// protocol header (v1 or v2) and takes the device's address from it; a
// connection without one is refused.
func TestProxyProtocol(t *testing.T) {
	b := newBundle(t)
	gw, err := New(Options{MQTTAddr: "127.0.0.1:0", ProxyProtocol: map[string]bool{"mqtt": true}, Config: b.state,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	defer gw.Close()

	connect := func(t *testing.T, clientID string, header *proxyproto.Header) error {
		nc, err := net.Dial("tcp", gw.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		if header != nil {
			if _, err := header.WriteTo(nc); err != nil {
				t.Fatal(err)
			}
		}
		c := paho.NewClient(paho.ClientConfig{Conn: nc})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, UsernameFlag: true, Username: "dev@i-aaaa", PasswordFlag: true, Password: []byte("pw-dev")})
		if err == nil {
			t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
		} else {
			nc.Close()
		}
		return err
	}
	remoteOf := func(t *testing.T, clientID string) string {
		cl, ok := gw.srv.Clients.Get("i-aaaa/" + clientID)
		if !ok {
			t.Fatalf("client %s not connected", clientID)
		}
		return cl.Net.Remote
	}
	dst := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883}
	t.Run("v1 header gives the device's address", func(t *testing.T) {
		h := proxyproto.HeaderProxyFromAddrs(1, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 5555}, dst)
		if err := connect(t, "p1", h); err != nil {
			t.Fatal(err)
		}
		if r := remoteOf(t, "p1"); r != "203.0.113.7:5555" {
			t.Fatalf("remote %q", r)
		}
	})
	t.Run("v2 header gives the device's address", func(t *testing.T) {
		h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("2001:db8::9"), Port: 4444}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1883})
		if err := connect(t, "p2", h); err != nil {
			t.Fatal(err)
		}
		if r := remoteOf(t, "p2"); r != "[2001:db8::9]:4444" {
			t.Fatalf("remote %q", r)
		}
	})
	t.Run("no header is refused", func(t *testing.T) {
		if err := connect(t, "p3", nil); err == nil {
			t.Fatal("connection without a PROXY header accepted")
		}
	})
}
