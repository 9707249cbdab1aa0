package nodelink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Source is the node's end of the config and usage flows: the control
// plane over HTTP (HTTPSource), or in the same process (LocalSource).
type Source interface {
	// Watch streams the events after since to fn, in revision order (a
	// KindSnapshot first when since is 0 or too old), until ctx ends, the
	// stream breaks, or fn returns an error; it returns that error.
	Watch(ctx context.Context, since int64, fn func(Event) error) error
	// Ack reports the revision the node has applied; it doubles as the
	// node's heartbeat.
	Ack(ctx context.Context, ack Ack) error
	// ReportUsage delivers one usage report; an error wrapping
	// ErrUsageRefused means it is refused for good.
	ReportUsage(ctx context.Context, rep UsageReport) error
	// RuleSecret fetches a forwarding rule's signing secret (the node
	// keeps it in memory only; it never travels in the config flow).
	RuleSecret(ctx context.Context, ruleID string) ([]byte, error)
}

// HTTPSource reaches the control plane over HTTP.
type HTTPSource struct {
	BaseURL string // control plane, e.g. https://cp.example.com
	NodeID  string
	Token   string       // aen_<node>_<secret>
	Client  *http.Client // default: no overall timeout (the stream is long-lived)
}

// defaultClient is shared, so that acks reuse a kept-alive connection
// instead of opening one (and leaving it idle) per request. Connecting is
// bounded (5 s) so that an unreachable control plane (packets dropped, not
// refused) fails fast and the next attempt comes soon.
var defaultClient = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 15 * time.Second,
	DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext, TLSHandshakeTimeout: 5 * time.Second,
	IdleConnTimeout: 90 * time.Second, MaxIdleConnsPerHost: 2}}

func (h *HTTPSource) client() *http.Client {
	if h.Client != nil {
		return h.Client
	}
	return defaultClient
}

func (h *HTTPSource) url(suffix string) string {
	return strings.TrimRight(h.BaseURL, "/") + "/internal/v1/nodes/" + url.PathEscape(h.NodeID) + suffix
}

// httpError turns a non-2xx answer into an error with the problem detail.
func httpError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p struct {
		Detail string `json:"detail"`
		Title  string `json:"title"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "") {
		msg = p.Title
		if p.Detail != "" {
			msg = p.Detail
		}
	}
	err := fmt.Errorf("control plane answered %s: %s", resp.Status, msg)
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNodeRejected, err)
	case http.StatusForbidden:
		// A refused usage report, or a node the control plane refuses.
		return fmt.Errorf("%w: %w: %w", ErrNodeRejected, ErrUsageRefused, err)
	case http.StatusConflict:
		// A heartbeat stating another cell than the node's registered one.
		return fmt.Errorf("%w: %w", ErrAckRefused, err)
	}
	return err
}

// ErrAckRefused: the control plane refused a node's Ack for good (it
// states a cell other than the node's registered one); the operator must
// act (start the node with its registered cell, or register it anew).
var ErrAckRefused = errors.New("control plane refused this node's heartbeat")

// Watch implements Source.
func (h *HTTPSource) Watch(ctx context.Context, since int64, fn func(Event) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url("/watch?since="+strconv.FormatInt(since, 10)), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.Token)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := h.client().Do(req)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return httpError(resp)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("watch: stream closed by the control plane")
			}
			return fmt.Errorf("watch: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// Ack implements Source.
func (h *HTTPSource) Ack(ctx context.Context, ack Ack) error {
	return h.post(ctx, "/ack", ack)
}

// ReportUsage implements Source.
func (h *HTTPSource) ReportUsage(ctx context.Context, rep UsageReport) error {
	if err := h.post(ctx, "/usage", rep); err != nil {
		return fmt.Errorf("send usage report %d: %w", rep.Seq, err)
	}
	return nil
}

// RuleSecret implements Source.
func (h *HTTPSource) RuleSecret(ctx context.Context, ruleID string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url("/rules/"+url.PathEscape(ruleID)+"/secret"), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.Token)
	resp, err := h.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("rule secret: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("rule secret: %w", httpError(resp))
	}
	var out ruleSecretJSON
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&out); err != nil || out.Secret == "" {
		return nil, errors.New("rule secret: bad answer from the control plane")
	}
	return []byte(out.Secret), nil
}

func (h *HTTPSource) post(ctx context.Context, suffix string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", strings.TrimPrefix(suffix, "/"), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url(suffix), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client().Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", strings.TrimPrefix(suffix, "/"), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return httpError(resp)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}
