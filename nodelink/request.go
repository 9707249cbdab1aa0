package nodelink

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

// Request is one call from the control plane to a node.
type Request struct {
	Op         string          `json:"op"`
	InstanceID string          `json:"instance_id"`
	Body       json.RawMessage `json:"body,omitempty"`
}

// Error is a node's refusal, with an HTTP-like status (400 bad request, 404
// not on this node, 409 conflict, 503 unavailable).
type Error struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("node: %d %s", e.Status, e.Message) }

// Errorf builds an Error.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// ErrNoNode: the node could not be reached and was sent nothing (not
// connected, no API URL known, connection refused).
var ErrNoNode = errors.New("node api unavailable")

// ErrNoAnswer: the request reached the node (or may have) but no answer
// came back; what it did is unknown.
var ErrNoAnswer = errors.New("node did not answer")

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

// Call implements Caller. The answer is encoded and decoded as over HTTP,
// so both topologies answer alike.
func (l *Local) Call(ctx context.Context, nodeID string, req Request, out any) error {
	if l.Server == nil || nodeID != l.NodeID {
		return fmt.Errorf("%w: node %s", ErrNoNode, nodeID)
	}
	res, err := l.Server.Serve(ctx, req)
	if err != nil {
		return err
	}
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
// token's secret (what the control plane stores): HMAC-SHA256 over a fixed
// label.
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
