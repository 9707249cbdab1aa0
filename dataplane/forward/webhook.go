package forward

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
)

// Webhook headers.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the
	// request body keyed with the rule's secret (as shown at creation).
	SignatureHeader = "X-Aerie-Signature"
	// RuleHeader names the rule that sent the request.
	RuleHeader = "X-Aerie-Rule"
)

// Webhook timeouts.
const (
	DefaultTimeout = 10 * time.Second
	MaxTimeout     = 60 * time.Second
)

// TransportOptions set how webhooks reach their receivers.
type TransportOptions struct {
	// RootCAs verifies receivers' certificates (nil: the system's).
	RootCAs *x509.CertPool
	// AllowPrivate lets webhooks reach loopback, private and link-local
	// addresses (off in production: a tenant must not reach the node's
	// own network).
	AllowPrivate bool
	// MaxConnsPerHost bounds the connections a rule keeps to its receiver.
	MaxConnsPerHost int
}

// errPrivate: the receiver resolved to an address webhooks may not reach.
var errPrivate = errors.New("address not allowed for webhooks (loopback, private or link-local)")

func blockedIP(ip net.IP) bool {
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast()
}

func newTransport(o TransportOptions) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !o.AllowPrivate {
		// Checked on the resolved address of every connection (no
		// DNS-rebinding gap between the check and the dial).
		d.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || blockedIP(ip) {
				return errPrivate
			}
			return nil
		}
	}
	n := o.MaxConnsPerHost
	if n <= 0 {
		n = 16
	}
	return &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second, MaxIdleConnsPerHost: n, MaxConnsPerHost: n, IdleConnTimeout: 90 * time.Second,
		ForceAttemptHTTP2: true}
}

// webhook POSTs CloudEvents to an HTTPS URL.
type webhook struct {
	url     string
	mode    string
	headers map[string]string
	secret  []byte
	rule    string
	client  *http.Client
	tr      *http.Transport
}

func newWebhook(r config.Rule, secret []byte, o TransportOptions) (*webhook, error) {
	u, err := url.Parse(r.Sink.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: webhook url must be https://", ErrPermanent)
	}
	timeout := time.Duration(r.Sink.TimeoutMillis) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := newTransport(o)
	return &webhook{url: r.Sink.URL, mode: r.Sink.Mode, headers: r.Sink.Headers, secret: secret, rule: r.ID, tr: tr,
		client: &http.Client{Transport: tr, Timeout: min(timeout, MaxTimeout),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

func (w *webhook) Close() { w.tr.CloseIdleConnections() }

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// structured is a CloudEvent in the JSON event format.
type structured struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data,omitempty"`
	DataBase64      string          `json:"data_base64,omitempty"`
	AerieRule       string          `json:"aerierule,omitempty"`
	MQTTQoS         int             `json:"mqttqos"`
}

func isJSONType(ct string) bool {
	ct = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	return ct == "application/json" || strings.HasSuffix(ct, "+json") || ct == "text/json"
}

// Encode returns the HTTP body and headers of ev in mode (structured or
// binary content mode of the CloudEvents HTTP binding).
func Encode(ev Event, mode string) ([]byte, http.Header, error) {
	h := http.Header{}
	ts := ev.Time.UTC().Format(time.RFC3339Nano)
	if mode == config.ModeBinary {
		h.Set("ce-specversion", "1.0")
		h.Set("ce-id", ev.ID)
		h.Set("ce-source", ev.Source)
		h.Set("ce-type", ev.Type)
		h.Set("ce-subject", headerEscape(ev.Subject))
		h.Set("ce-time", ts)
		h.Set("ce-aerierule", ev.Rule)
		h.Set("ce-mqttqos", fmt.Sprint(ev.QoS))
		h.Set("Content-Type", ev.ContentType)
		return ev.Data, h, nil
	}
	s := structured{SpecVersion: "1.0", ID: ev.ID, Source: ev.Source, Type: ev.Type, Subject: ev.Subject, Time: ts,
		DataContentType: ev.ContentType, AerieRule: ev.Rule, MQTTQoS: int(ev.QoS)}
	if isJSONType(ev.ContentType) && json.Valid(ev.Data) {
		s.Data = ev.Data
	} else {
		s.DataBase64 = base64.StdEncoding.EncodeToString(ev.Data)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, nil, fmt.Errorf("encode cloudevent: %w", err)
	}
	h.Set("Content-Type", "application/cloudevents+json; charset=utf-8")
	return b, h, nil
}

// Deliver implements Sink.
func (w *webhook) Deliver(ctx context.Context, ev Event) error {
	body, h, err := Encode(ev, w.mode)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPermanent, err)
	}
	for k, v := range w.headers {
		req.Header.Set(k, v)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "aerie-forwarder/1")
	req.Header.Set(RuleHeader, w.rule)
	if len(w.secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		if errors.Is(err, errPrivate) {
			return fmt.Errorf("%w: %w", ErrPermanent, errPrivate)
		}
		return fmt.Errorf("webhook: %w", scrub(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500 || c < 400:
		return fmt.Errorf("webhook answered %d", c)
	default:
		return fmt.Errorf("%w: webhook answered %d", ErrPermanent, c)
	}
}

// scrub drops the URL (it may carry a token in its query) from a client
// error.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// headerEscape percent-encodes what the CloudEvents HTTP binding requires
// in a ce-* header value: non-printable ASCII, space, '"', '%' and every
// byte of a non-ASCII character.
func headerEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
