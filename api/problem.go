package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/aeriemq/aerie/internal/problem"
	"github.com/aeriemq/aerie/tenancy"
)

// ProblemTypeBase prefixes every problem `type` URI; the suffix is stable.
const ProblemTypeBase = "https://aerie.dev/problems/"

// Problem is an RFC 9457 problem details body (application/problem+json).
type Problem struct {
	Type      string               `json:"type"`
	Title     string               `json:"title"`
	Status    int                  `json:"status"`
	Detail    string               `json:"detail,omitempty"`
	Instance  string               `json:"instance,omitempty"`
	RequestID string               `json:"request_id,omitempty"`
	Errors    []tenancy.FieldError `json:"errors,omitempty"`
}

// ProblemFor maps err to its problem (status, type, title, detail, field
// errors) through the one error table, problem.For. Unknown errors are 500
// with no detail (the error is logged).
func ProblemFor(err error) Problem {
	kind, known := problem.For(err)
	p := Problem{Type: ProblemTypeBase + kind.Slug, Title: kind.Title, Status: kind.Status, Detail: kind.Detail}
	if known && p.Detail == "" {
		p.Detail = err.Error()
	}
	var ve *tenancy.ValidationError
	if errors.As(err, &ve) {
		p.Errors = ve.Fields
	}
	return p
}

// WriteError answers with the problem for err, logging server errors.
func (a *API) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	p := ProblemFor(err)
	degraded := p.Type == ProblemTypeBase+problem.Degraded.Slug
	if degraded {
		a.log.WarnContext(r.Context(), "request refused: database unreachable", "error", err, "request_id", middleware.GetReqID(r.Context()),
			"method", r.Method, "path", r.URL.Path)
	} else if p.Status >= 500 {
		a.log.ErrorContext(r.Context(), "request failed", "error", err, "request_id", middleware.GetReqID(r.Context()),
			"method", r.Method, "path", r.URL.Path)
	}
	var rl *problem.RateLimitedError
	if errors.As(err, &rl) {
		secs := int((rl.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	} else if degraded {
		w.Header().Set("Retry-After", strconv.Itoa(problem.DegradedRetryAfter))
	} else if p.Status == http.StatusTooManyRequests || p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1") // per-second quotas; a node reconnecting
	}
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="aerie"`)
	}
	WriteProblem(w, r, p)
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	p.RequestID = middleware.GetReqID(r.Context())
	if p.Instance == "" {
		p.Instance = r.URL.Path
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
