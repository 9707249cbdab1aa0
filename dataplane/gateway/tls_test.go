package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// TestTLSListenersAndHostNames: MQTT over TLS and secure WebSocket with a
// generated development certificate; TLS SNI and the WebSocket Host name
// the instance "<instance>.<base-domain>", so a device needs no
// "@<instance>" in its username.
func TestTLSListenersAndHostNames(t *testing.T) {
	b := newBundle(t)
	dir := filepath.Join(t.TempDir(), "tls")
	cfg, err := TLSConfig("", "", dir, []string{"*.mqtt.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	t.Run("the development certificate is reused, and renewed when hosts change", func(t *testing.T) {
		if _, err := TLSConfig("", "", dir, []string{"*.mqtt.example.test"}); err != nil {
			t.Fatal(err)
		}
		again, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
		if !bytes.Equal(again, certPEM) {
			t.Fatal("certificate regenerated although still valid")
		}
		if _, err := TLSConfig("", "", filepath.Join(t.TempDir(), "x"), []string{"broker.example.test"}); err != nil {
			t.Fatal(err)
		}
		if _, err := TLSConfig("cert-only.pem", "", dir, nil); err == nil {
			t.Fatal("a certificate without a key was accepted")
		}
	})

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	gw, err := New(Options{MQTTAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", WSSAddr: "127.0.0.1:0", TLS: cfg,
		Config: b.state, BaseDomain: "mqtt.example.test", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if gw.TLSAddr() == "" || gw.WSSAddr() == "" {
		t.Fatal("TLS listeners not bound")
	}
	roots := x509.NewCertPool()
	blk, _ := pem.Decode(certPEM)
	c, _ := x509.ParseCertificate(blk.Bytes)
	roots.AddCert(c)

	connect := func(broker, serverName, host, user, pass string) error {
		opts := mqtt3.NewClientOptions().AddBroker(broker).SetClientID("tls-dev").SetUsername(user).SetPassword(pass).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
		if serverName != "" {
			opts.SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: serverName})
		}
		if host != "" {
			opts.SetHTTPHeaders(http.Header{"Host": {host}})
		}
		cl := mqtt3.NewClient(opts)
		tok := cl.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatal("connect timed out")
		}
		if tok.Error() == nil {
			cl.Disconnect(0)
		}
		return tok.Error()
	}
	cases := []struct {
		name, broker, sni, host, user, pass, wantErr string
	}{
		{"TLS, instance from SNI", "ssl://" + gw.TLSAddr(), "i-bbbb.mqtt.example.test", "", "dev", "pw-b", ""},
		{"TLS, SNI names an unknown instance", "ssl://" + gw.TLSAddr(), "i-zzzz.mqtt.example.test", "", "dev", "pw-b", "not Authorized"},
		{"TLS, SNI and username disagree", "ssl://" + gw.TLSAddr(), "i-bbbb.mqtt.example.test", "", "dev@i-aaaa", "pw-dev", "bad user name or password"},
		{"TLS, no instance host: username names it", "ssl://" + gw.TLSAddr(), "localhost", "", "dev@i-aaaa", "pw-dev", ""},
		{"secure WebSocket, instance from SNI", "wss://" + gw.WSSAddr() + "/mqtt", "i-bbbb.mqtt.example.test", "", "dev", "pw-b", ""},
		{"WebSocket, instance from Host", "ws://" + gw.WSAddr() + "/mqtt", "", "i-bbbb.mqtt.example.test", "dev", "pw-b", ""},
		{"WebSocket, Host of another instance", "ws://" + gw.WSAddr() + "/mqtt", "", "i-aaaa.mqtt.example.test", "dev", "pw-b", "bad user name or password"},
		{"plain TCP has no host name: refused without @instance", "tcp://" + gw.MQTTAddr(), "", "", "dev", "pw-b", "not Authorized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := connect(tc.broker, tc.sni, tc.host, tc.user, tc.pass)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
	t.Run("a client that does not trust the certificate fails the handshake", func(t *testing.T) {
		opts := mqtt3.NewClientOptions().AddBroker("ssl://" + gw.TLSAddr()).SetClientID("x").SetUsername("dev@i-aaaa").SetPassword("pw-dev").
			SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetTLSConfig(&tls.Config{ServerName: "localhost"})
		tok := mqtt3.NewClient(opts).Connect()
		tok.WaitTimeout(10 * time.Second)
		if tok.Error() == nil || !strings.Contains(tok.Error().Error(), "certificate") {
			t.Fatalf("err %v", tok.Error())
		}
	})
}
