package nodeapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Path is where a node serves its API: POST Path + op.
const Path = "/internal/v1/node/"

// maxBody bounds a request body (an ack of 10,000 offsets fits).
const maxBody = 1 << 20

// HTTPHandler serves srv over HTTP, authenticated with secret (Bearer).
func HTTPHandler(srv *Server, secret string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || secret == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(secret)) != 1 {
			writeErr(w, Errorf(http.StatusUnauthorized, "bad node api secret"))
			return
		}
		if r.Method != http.MethodPost {
			writeErr(w, Errorf(http.StatusMethodNotAllowed, "POST only"))
			return
		}
		var req Request
		if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&req); err != nil {
			writeErr(w, Errorf(http.StatusBadRequest, "bad request body"))
			return
		}
		req.Op = strings.TrimPrefix(r.URL.Path, Path)
		res, err := srv.Serve(r.Context(), req)
		if err != nil {
			var ne *Error
			if !errors.As(err, &ne) {
				ne = Errorf(http.StatusServiceUnavailable, "node error")
			}
			writeErr(w, ne)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
}

func writeErr(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}

// HTTP calls nodes over HTTP (the split topology). Resolve returns a
// node's API URL and its secret.
type HTTP struct {
	Resolve func(ctx context.Context, nodeID string) (baseURL, secret string, err error)
	Client  *http.Client // default: 40 s timeout (long polls wait up to 30 s)
}

// Call implements Caller.
func (h *HTTP) Call(ctx context.Context, nodeID string, req Request, out any) error {
	base, secret, err := h.Resolve(ctx, nodeID)
	if err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode node request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+Path+req.Op, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("node request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+secret)
	c := h.Client
	if c == nil {
		c = &http.Client{Timeout: 40 * time.Second}
	}
	resp, err := c.Do(hr)
	if err != nil {
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
		return fmt.Errorf("decode node answer: %w", err)
	}
	return nil
}
