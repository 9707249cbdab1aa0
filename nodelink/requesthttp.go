package nodelink

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"
)

// Path is where a node serves requests: POST Path + op.
const Path = "/internal/v1/node/"

// maxRequestBody bounds a request body (an ack of 10,000 offsets, a 256 KiB
// publish in base64, fit).
const maxRequestBody = 1 << 20

// ServerHandler serves srv over HTTP, authenticated with secret (Bearer).
func ServerHandler(srv *Server, secret string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || secret == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(secret)) != 1 {
			writeNodeErr(w, Errorf(http.StatusUnauthorized, "bad node api secret"))
			return
		}
		if r.Method != http.MethodPost {
			writeNodeErr(w, Errorf(http.StatusMethodNotAllowed, "POST only"))
			return
		}
		var req Request
		if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&req); err != nil {
			writeNodeErr(w, Errorf(http.StatusBadRequest, "bad request body"))
			return
		}
		req.Op = strings.TrimPrefix(r.URL.Path, Path)
		res, err := srv.Serve(r.Context(), req)
		if err != nil {
			var ne *Error
			if !errors.As(err, &ne) {
				ne = Errorf(http.StatusServiceUnavailable, "node error")
			}
			writeNodeErr(w, ne)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
}

func writeNodeErr(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}

// HTTP calls nodes over HTTP (the split topology). Resolve returns a
// node's API URL and the SHA-256 of its token's secret (Secret is derived
// from it).
type HTTP struct {
	Resolve func(ctx context.Context, nodeID string) (baseURL string, tokenSHA256 []byte, err error)
	Client  *http.Client // default: 40 s timeout (long polls wait up to 30 s)
}

// Call implements Caller. A failure before the request was written is
// ErrNoNode (the node did nothing); one after it is ErrNoAnswer.
func (h *HTTP) Call(ctx context.Context, nodeID string, req Request, out any) error {
	base, hash, err := h.Resolve(ctx, nodeID)
	if err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode node request: %w", err)
	}
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) }})
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+Path+req.Op, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("node request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+Secret(hash))
	c := h.Client
	if c == nil {
		c = &http.Client{Timeout: 40 * time.Second}
	}
	resp, err := c.Do(hr)
	if err != nil {
		if wrote.Load() {
			return fmt.Errorf("%w: %w", ErrNoAnswer, err)
		}
		return fmt.Errorf("%w: %w", ErrNoNode, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ne Error
		if json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&ne) != nil || ne.Status == 0 {
			ne = Error{Status: resp.StatusCode, Message: resp.Status}
		}
		return &ne
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%w: decode node answer: %w", ErrNoAnswer, err)
	}
	return nil
}
