package nodelink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Control is what the control plane does with what nodes tell it.
type Control interface {
	// AuthenticateNode checks a node's token (aen_<node>_<secret>).
	AuthenticateNode(ctx context.Context, nodeID, token string) error
	// NodeHeartbeat records a node's Ack: applied revision, endpoints,
	// connections and API URL.
	NodeHeartbeat(ctx context.Context, nodeID string, ack Ack) error
	// IngestUsage counts a usage report once per (node, seq); an error
	// wrapping ErrUsageRefused refuses it for good.
	IngestUsage(ctx context.Context, rep UsageReport) (duplicate bool, err error)
	// RuleSecret is the signing secret of forwarding rule ruleID, handed
	// only to the node its instance is placed on.
	RuleSecret(ctx context.Context, nodeID, ruleID string) ([]byte, error)
}

// Hub is the control plane's end of the config and usage flows, shared by
// both transports: LocalSource (in process) and Handler (HTTP).
type Hub struct {
	Feed    *Feed
	Control Control
	Log     *slog.Logger
}

// ack records a node's Ack and wakes the requests in this process waiting
// for it to apply a revision (other replicas learn it from the Store's
// notifications).
func (h *Hub) ack(ctx context.Context, nodeID string, ack Ack) error {
	if err := h.Control.NodeHeartbeat(ctx, nodeID, ack); err != nil {
		return err
	}
	if ack.Revision > 0 {
		h.Feed.wakeApplied(nodeID)
	}
	return nil
}

func (h *Hub) usage(ctx context.Context, nodeID string, rep UsageReport) (bool, error) {
	if rep.NodeID != nodeID {
		return false, &FieldError{Field: "node_id", Message: "must be the node of the URL"}
	}
	return h.Control.IngestUsage(ctx, rep)
}

// ErrUnknownEndpoint: no such node-link endpoint (or method).
var ErrUnknownEndpoint = errors.New("no such node link endpoint")

// FieldError is a request from a node that is malformed in one field.
type FieldError struct{ Field, Message string }

func (e *FieldError) Error() string { return e.Field + " " + e.Message }

// LocalSource is the Source of a node in the control plane's process
// (aerie serve): the same Hub a remote node reaches over HTTP, without
// the HTTP.
type LocalSource struct {
	Hub    *Hub
	NodeID string
}

// Watch implements Source.
func (l LocalSource) Watch(ctx context.Context, since int64, fn func(Event) error) error {
	return l.Hub.Feed.Watch(ctx, l.NodeID, since, fn)
}

// Ack implements Source.
func (l LocalSource) Ack(ctx context.Context, ack Ack) error { return l.Hub.ack(ctx, l.NodeID, ack) }

// ReportUsage implements Source.
func (l LocalSource) ReportUsage(ctx context.Context, rep UsageReport) error {
	_, err := l.Hub.usage(ctx, l.NodeID, rep)
	return err
}

// RuleSecret implements Source.
func (l LocalSource) RuleSecret(ctx context.Context, ruleID string) ([]byte, error) {
	return l.Hub.Control.RuleSecret(ctx, l.NodeID, ruleID)
}

// maxNodeBody bounds an ack or usage report body.
const maxNodeBody = 8 << 20

// Handler serves the Hub over HTTP under /nodes/{node_id}/… (mount it at
// /internal/v1). writeErr answers an error (the control plane's problem
// mapping; a *FieldError is a bad request, ErrUnknownEndpoint not found,
// ErrUsageRefused forbidden).
func (h *Hub) Handler(writeErr func(http.ResponseWriter, *http.Request, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/nodes/")
		node, op, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 || node == "" {
			writeErr(w, r, ErrUnknownEndpoint)
			return
		}
		if err := h.Control.AuthenticateNode(r.Context(), node, bearer(r)); err != nil {
			writeErr(w, r, err)
			return
		}
		var err error
		switch {
		case op == "watch" && r.Method == http.MethodGet:
			err = h.serveWatch(w, r, node)
		case op == "ack" && r.Method == http.MethodPost:
			err = h.serveAck(w, r, node)
		case op == "usage" && r.Method == http.MethodPost:
			err = h.serveUsage(w, r, node)
		case strings.HasPrefix(op, "rules/") && strings.HasSuffix(op, "/secret") && r.Method == http.MethodGet:
			err = h.serveRuleSecret(w, r, node, strings.TrimSuffix(strings.TrimPrefix(op, "rules/"), "/secret"))
		default:
			err = ErrUnknownEndpoint
		}
		if err != nil {
			writeErr(w, r, err)
		}
	})
}

// ruleSecretJSON carries a rule's signing secret to its node.
type ruleSecretJSON struct {
	Secret string `json:"secret"`
}

func (h *Hub) serveRuleSecret(w http.ResponseWriter, r *http.Request, node, ruleID string) error {
	if ruleID == "" || strings.Contains(ruleID, "/") {
		return ErrUnknownEndpoint
	}
	sec, err := h.Control.RuleSecret(r.Context(), node, ruleID)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(ruleSecretJSON{Secret: string(sec)})
}

func bearer(r *http.Request) string {
	v := r.Header.Get("Authorization")
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

func decodeBody(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, maxNodeBody)).Decode(v); err != nil {
		return &FieldError{Field: "body", Message: "is not valid JSON for this request"}
	}
	return nil
}

func (h *Hub) serveAck(w http.ResponseWriter, r *http.Request, node string) error {
	var ack Ack
	if err := decodeBody(r, &ack); err != nil {
		return err
	}
	if err := h.ack(r.Context(), node, ack); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Hub) serveUsage(w http.ResponseWriter, r *http.Request, node string) error {
	var rep UsageReport
	if err := decodeBody(r, &rep); err != nil {
		return err
	}
	dup, err := h.usage(r.Context(), node, rep)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"seq": rep.Seq, "duplicate": dup})
}

// serveWatch streams the node's config events as newline-delimited JSON.
func (h *Hub) serveWatch(w http.ResponseWriter, r *http.Request, node string) error {
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return &FieldError{Field: "since", Message: "must be a revision (integer ≥ 0)"}
		}
		since = v
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		return errors.New("streaming unsupported")
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	enc := json.NewEncoder(w)
	err := h.Feed.Watch(r.Context(), node, since, func(ev Event) error {
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		if err := enc.Encode(ev); err != nil {
			return fmt.Errorf("write event: %w", err)
		}
		fl.Flush()
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) && h.Log != nil {
		h.Log.Warn("config watch ended", "node", node, "error", err)
	}
	return nil
}
