// Package nodeapi is the control plane's request path to the data-plane
// node serving an instance: a small set of named operations (Op) that read
// node-local state the control plane does not hold (a topic's messages in
// the node's store, consumer groups). The payload of a message never passes
// through Postgres: the control plane forwards the call to the node and the
// node's answer back to the API client.
//
// In `aerie serve` the node is in the same process (Local). In the split
// topology the node serves
//
//	POST {node api url}/internal/v1/node/{op}
//	Authorization: Bearer <Secret(node token)>
//	{"instance_id": "...", "body": {...}}
//
// and the control plane (HTTP) calls it with the same secret, derived from
// the node token both sides already share (the control plane keeps only the
// token's SHA-256, from which the secret is derived). Callers check tenancy
// (org → instance → topic) before calling: the node trusts the instance ID.
package nodeapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Request is one call to a node.
type Request struct {
	Op         string          `json:"op"`
	InstanceID string          `json:"instance_id"`
	Body       json.RawMessage `json:"body,omitempty"`
}

// Error is a node's refusal, with an HTTP-like status (400 bad request, 404
// not on this node, 503 unavailable).
type Error struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("node: %d %s", e.Status, e.Message) }

// Errorf builds an Error.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// ErrNoNode: the instance's node cannot be reached for such calls (not
// connected, no API URL known).
var ErrNoNode = errors.New("node api unavailable")

// Caller sends a Request to a node and decodes the answer into out.
type Caller interface {
	Call(ctx context.Context, nodeID string, req Request, out any) error
}

// Handler serves one Op on the node.
type Handler func(ctx context.Context, instanceID string, body json.RawMessage) (any, error)

// Server dispatches Requests to the node's handlers.
type Server struct {
	mu  sync.RWMutex
	ops map[string]Handler
}

// NewServer returns a Server with no operations.
func NewServer() *Server { return &Server{ops: map[string]Handler{}} }

// Handle registers op.
func (s *Server) Handle(op string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops[op] = h
}

// Serve runs one request.
func (s *Server) Serve(ctx context.Context, req Request) (any, error) {
	s.mu.RLock()
	h := s.ops[req.Op]
	s.mu.RUnlock()
	if h == nil {
		return nil, Errorf(404, "unknown operation %q", req.Op)
	}
	return h(ctx, req.InstanceID, req.Body)
}

// Local calls a Server in the same process (aerie serve). NodeID may be
// set after construction, before the first call.
type Local struct {
	NodeID string
	Server *Server
}

// Call implements Caller.
func (l *Local) Call(ctx context.Context, nodeID string, req Request, out any) error {
	if l.Server == nil || nodeID != l.NodeID {
		return fmt.Errorf("%w: node %s", ErrNoNode, nodeID)
	}
	res, err := l.Server.Serve(ctx, req)
	if err != nil {
		return err
	}
	// Round-trip through JSON so both topologies answer alike.
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode node answer: %w", err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode node answer: %w", err)
	}
	return nil
}

// Secret derives the node API's bearer secret from the SHA-256 of the node
// token (what the control plane stores).
func Secret(tokenSHA256 []byte) string {
	m := hmac.New(sha256.New, tokenSHA256)
	m.Write([]byte("aerie node api v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// SecretFromToken is Secret for the node, which holds the token itself
// (aen_<node>_<secret>; the control plane stores the SHA-256 of <secret>).
func SecretFromToken(token string) string {
	if i := strings.LastIndexByte(token, '_'); i >= 0 {
		token = token[i+1:]
	}
	sum := sha256.Sum256([]byte(token))
	return Secret(sum[:])
}
