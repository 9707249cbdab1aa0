package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/dberr"
	"github.com/aeriemq/aerie/internal/idempotency"
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

// Errors of the HTTP layer; handlers return them (wrapped or not) to
// WriteError like domain errors.
var (
	ErrMalformed           = errors.New("malformed request")
	ErrBodyTooLarge        = errors.New("request body too large")
	ErrUnsupportedMedia    = errors.New("unsupported media type")
	ErrPreconditionFailed  = errors.New("precondition failed")
	ErrInsufficientScope   = errors.New("insufficient scope")
	ErrMethodNotAllowed    = errors.New("method not allowed")
	ErrRouteNotFound       = errors.New("no such route")
	errRateLimitedSentinel = errors.New("too many requests")
)

// RateLimitedError asks the client to wait RetryAfter (429 + Retry-After).
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string { return "too many requests" }

// Is makes errors.Is(err, errRateLimitedSentinel) match.
func (e *RateLimitedError) Is(target error) bool { return target == errRateLimitedSentinel }

// problemKind is one row of the error→HTTP table.
type problemKind struct {
	Status int
	Slug   string // appended to ProblemTypeBase
	Title  string
}

// errorTable is THE mapping from errors to HTTP problems: the first row whose
// error matches (errors.Is) wins. Add a row here for a new domain error.
var errorTable = []struct {
	Err  error
	Kind problemKind
}{
	{tenancy.ErrNotFound, problemKind{http.StatusNotFound, "not-found", "Not found"}},
	{billing.ErrNotFound, problemKind{http.StatusNotFound, "not-found", "Not found"}},
	{billing.ErrInvalid, problemKind{http.StatusBadRequest, "invalid-request", "Invalid request"}},
	{billing.ErrInvalidRange, problemKind{http.StatusBadRequest, "invalid-request", "Invalid request"}},
	{ErrRouteNotFound, problemKind{http.StatusNotFound, "not-found", "Not found"}},
	{tenancy.ErrUnauthenticated, problemKind{http.StatusUnauthorized, "unauthenticated", "Authentication required"}},
	{tenancy.ErrForbidden, problemKind{http.StatusForbidden, "forbidden", "Forbidden"}},
	{ErrInsufficientScope, problemKind{http.StatusForbidden, "insufficient-scope", "Insufficient scope"}},
	{tenancy.ErrDeletionProtected, problemKind{http.StatusConflict, "deletion-protected", "Deletion protection is on"}},
	{tenancy.ErrNoNode, problemKind{http.StatusServiceUnavailable, "no-capacity", "No data-plane capacity"}},
	{tenancy.ErrPayloadTooLarge, problemKind{http.StatusRequestEntityTooLarge, "payload-too-large", "Payload too large"}},
	{tenancy.ErrRateLimited, problemKind{http.StatusTooManyRequests, "quota-rate-limited", "Publish rate quota used up"}},
	{tenancy.ErrLimitReached, problemKind{http.StatusConflict, "limit-reached", "Plan limit reached"}},
	{tenancy.ErrQuotaExceeded, problemKind{http.StatusConflict, "quota-exceeded", "Quota exceeded"}},
	{tenancy.ErrInstanceUnavailable, problemKind{http.StatusConflict, "instance-unavailable", "Instance unavailable"}},
	{tenancy.ErrNodeUnavailable, problemKind{http.StatusServiceUnavailable, "node-unavailable", "Data-plane node unavailable"}},
	{tenancy.ErrOutcomeUnknown, problemKind{http.StatusGatewayTimeout, "publish-outcome-unknown", "Publish outcome unknown"}},
	{tenancy.ErrLastOwner, problemKind{http.StatusConflict, "last-owner", "An org must keep one owner"}},
	{tenancy.ErrConflict, problemKind{http.StatusConflict, "conflict", "Conflict"}},
	{ErrMalformed, problemKind{http.StatusBadRequest, "malformed-request", "Malformed request"}},
	{ErrBodyTooLarge, problemKind{http.StatusRequestEntityTooLarge, "body-too-large", "Request body too large"}},
	{ErrUnsupportedMedia, problemKind{http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type"}},
	{ErrPreconditionFailed, problemKind{http.StatusPreconditionFailed, "precondition-failed", "Precondition failed"}},
	{tenancy.ErrStale, problemKind{http.StatusPreconditionFailed, "precondition-failed", "Precondition failed"}},
	{idempotency.ErrMismatch, problemKind{http.StatusUnprocessableEntity, "idempotency-key-reused", "Idempotency key reused"}},
	{idempotency.ErrInFlight, problemKind{http.StatusConflict, "idempotency-in-progress", "Request in progress"}},
	{ErrMethodNotAllowed, problemKind{http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed"}},
	{errRateLimitedSentinel, problemKind{http.StatusTooManyRequests, "rate-limited", "Too many requests"}},
}

var (
	validationKind = problemKind{http.StatusBadRequest, "validation-error", "Invalid request"}
	internalKind   = problemKind{http.StatusInternalServerError, "internal", "Internal server error"}
	// degradedKind: the database cannot be reached; retry after Retry-After.
	degradedKind = problemKind{http.StatusServiceUnavailable, "service-degraded", "Service temporarily degraded"}
	// badValueKind: a value the database refused to store (out of range, a
	// byte text cannot hold) that validation let through.
	badValueKind = problemKind{http.StatusBadRequest, "invalid-value", "Invalid value"}
)

// DegradedRetryAfter is the Retry-After (seconds) of a service-degraded 503.
const DegradedRetryAfter = 2

// ProblemFor maps err to its problem (status, type, title, detail, field
// errors). Unknown errors are 500 with no detail (the error is logged).
func ProblemFor(err error) Problem {
	kind, known := internalKind, false
	var ve *tenancy.ValidationError
	if errors.As(err, &ve) && ve.Conflict {
		return Problem{Type: ProblemTypeBase + "conflict", Title: "Conflict", Status: http.StatusConflict,
			Detail: "a value is already taken", Errors: ve.Fields}
	}
	if errors.As(err, &ve) {
		return Problem{Type: ProblemTypeBase + validationKind.Slug, Title: validationKind.Title, Status: validationKind.Status,
			Detail: "one or more fields are invalid", Errors: ve.Fields}
	}
	for _, row := range errorTable {
		if errors.Is(err, row.Err) {
			kind, known = row.Kind, true
			break
		}
	}
	if !known {
		switch {
		case dberr.Unavailable(err):
			return Problem{Type: ProblemTypeBase + degradedKind.Slug, Title: degradedKind.Title, Status: degradedKind.Status,
				Detail: "the database is unreachable; retry shortly"}
		case dberr.BadValue(err):
			return Problem{Type: ProblemTypeBase + badValueKind.Slug, Title: badValueKind.Title, Status: badValueKind.Status,
				Detail: "a value in the request is out of range or cannot be stored"}
		}
	}
	p := Problem{Type: ProblemTypeBase + kind.Slug, Title: kind.Title, Status: kind.Status}
	if known {
		p.Detail = err.Error()
	}
	return p
}

// WriteError answers with the problem for err, logging server errors.
func (a *API) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	p := ProblemFor(err)
	if p.Type == ProblemTypeBase+degradedKind.Slug {
		a.log.WarnContext(r.Context(), "request refused: database unreachable", "error", err, "request_id", middleware.GetReqID(r.Context()),
			"method", r.Method, "path", r.URL.Path)
	} else if p.Status >= 500 {
		a.log.ErrorContext(r.Context(), "request failed", "error", err, "request_id", middleware.GetReqID(r.Context()),
			"method", r.Method, "path", r.URL.Path)
	}
	var rl *RateLimitedError
	if errors.As(err, &rl) {
		secs := int((rl.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	} else if p.Type == ProblemTypeBase+degradedKind.Slug {
		w.Header().Set("Retry-After", strconv.Itoa(DegradedRetryAfter))
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
