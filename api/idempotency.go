package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/aeriemq/aerie/internal/idempotency"
	"github.com/aeriemq/aerie/tenancy"
)

// IdempotencyKeyHeader names the header.
const IdempotencyKeyHeader = "Idempotency-Key"

// replayedHeader marks a replayed response.
const replayedHeader = "Idempotent-Replayed"

type storedResponse struct {
	Status  int         `json:"status"`
	Headers http.Header `json:"headers"`
	Body    []byte      `json:"body"`
}

// Idempotency makes POSTs with an Idempotency-Key safe to retry: the first
// response (below 500) is stored for idempotency.TTL and replayed for the
// same key and body; the same key with another body is 422. Keys are per
// caller (user or API key; anonymous calls share one space).
func (a *API) Idempotency(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(IdempotencyKeyHeader)
		if r.Method != http.MethodPost || key == "" || a.idem == nil {
			next.ServeHTTP(w, r)
			return
		}
		if len(key) > 255 {
			a.WriteError(w, r, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: IdempotencyKeyHeader, Message: "must be at most 255 characters"}}})
			return
		}
		body, err := readBody(w, r)
		if err != nil {
			a.WriteError(w, r, err)
			return
		}
		scope := idempotencyScope(r)
		h := sha256.New()
		h.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
		h.Write(body)
		keyID := idempotency.KeyID(key)

		stored, err := a.idem.Begin(r.Context(), scope, keyID, h.Sum(nil))
		switch {
		case err != nil:
			a.WriteError(w, r, err)
			return
		case stored != nil:
			a.replay(w, r, key, scope, stored)
			return
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		completed := false
		defer func() {
			if !completed {
				a.idem.Abandon(context.WithoutCancel(r.Context()), scope, keyID)
			}
		}()
		next.ServeHTTP(rec, r)
		if rec.status >= 500 {
			return
		}
		hdr := http.Header{}
		for _, k := range []string{"Content-Type", "Location", "ETag", ConfigRevisionHeader} {
			if v := w.Header().Values(k); len(v) > 0 {
				hdr[k] = v
			}
		}
		plain, _ := json.Marshal(storedResponse{Status: rec.status, Headers: hdr, Body: rec.body.Bytes()})
		if err := a.idem.Finish(context.WithoutCancel(r.Context()), scope, keyID, rec.status, idempotency.Seal(key, scope, plain)); err != nil {
			a.log.ErrorContext(r.Context(), "storing idempotent response failed", "error", err)
			return
		}
		completed = true
	})
}

// idempotencyScope is the caller's key space: its API key, its user, or
// the one anonymous space.
func idempotencyScope(r *http.Request) string {
	p := PrincipalFrom(r.Context())
	switch {
	case p == nil:
		return "anon"
	case p.IsAPIKey():
		return "key:" + p.APIKeyID
	}
	return "user:" + p.UserID
}

// replay answers with a stored response.
func (a *API) replay(w http.ResponseWriter, r *http.Request, key, scope string, sealed []byte) {
	plain, err := idempotency.Open(key, scope, sealed)
	var resp storedResponse
	if err == nil {
		err = json.Unmarshal(plain, &resp)
	}
	if err != nil {
		a.WriteError(w, r, fmt.Errorf("replay stored response: %w", err))
		return
	}
	for k, v := range resp.Headers {
		w.Header()[k] = v
	}
	w.Header().Set(replayedHeader, "true")
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// recorder writes through and keeps a copy of the response.
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}
