// Package problem is the one table from errors to what a caller is told:
// the HTTP status, a stable problem-type slug and title (the API's
// problem+json), and the sentence the web console shows a person. The api
// and console packages both ask For, so an error answers the same status
// on both; add a row to table for a new error. It also defines the errors
// of the HTTP layer that both surfaces share (malformed input, rate
// limits, …).
package problem

import (
	"errors"
	"net/http"
	"time"

	"github.com/aeriemq/aerie/billing"
	"github.com/aeriemq/aerie/internal/dberr"
	"github.com/aeriemq/aerie/internal/idempotency"
	"github.com/aeriemq/aerie/tenancy"
)

// Errors of the HTTP layer; handlers return them (wrapped or not) like
// domain errors.
var (
	ErrMalformed          = errors.New("malformed request")
	ErrBodyTooLarge       = errors.New("request body too large")
	ErrUnsupportedMedia   = errors.New("unsupported media type")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrInsufficientScope  = errors.New("insufficient scope")
	ErrMethodNotAllowed   = errors.New("method not allowed")
	ErrRouteNotFound      = errors.New("no such route")
	errRateLimited        = errors.New("too many requests")
)

// RateLimitedError asks the client to wait RetryAfter (429 + Retry-After).
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string { return "too many requests" }

// Is makes a RateLimitedError match the table's rate-limited row.
func (e *RateLimitedError) Is(target error) bool { return target == errRateLimited }

// Kind is what a caller is told of an error.
type Kind struct {
	Status int
	Slug   string // the API appends it to its problem-type base URI
	Title  string
	// Detail is the API's fixed detail; "" means the error's own text
	// (none for Internal).
	Detail string
	// Message is the sentence the console shows; "" means the error's own
	// text.
	Message string
}

// The kinds that are not one error of the table.
var (
	// Validation: a *tenancy.ValidationError (fields listed).
	Validation = Kind{Status: http.StatusBadRequest, Slug: "validation-error", Title: "Invalid request", Detail: "one or more fields are invalid"}
	// Taken: a Conflict *tenancy.ValidationError (a value already taken).
	Taken = Kind{Status: http.StatusConflict, Slug: "conflict", Title: "Conflict", Detail: "a value is already taken"}
	// Internal: an unknown error (logged; no detail).
	Internal = Kind{Status: http.StatusInternalServerError, Slug: "internal", Title: "Internal server error",
		Message: "Something went wrong on our side. Try again."}
	// Degraded: the database cannot be reached; retry after
	// DegradedRetryAfter seconds.
	Degraded = Kind{Status: http.StatusServiceUnavailable, Slug: "service-degraded", Title: "Service temporarily degraded",
		Detail: "the database is unreachable; retry shortly", Message: "The service is degraded for a moment. Try again in a few seconds."}
	// BadValue: a value the database refused to store (out of range, a
	// byte text cannot hold) that validation let through.
	BadValue = Kind{Status: http.StatusBadRequest, Slug: "invalid-value", Title: "Invalid value",
		Detail: "a value in the request is out of range or cannot be stored", Message: "A value is out of range or cannot be stored."}
)

// DegradedRetryAfter is the Retry-After (seconds) of a Degraded answer.
const DegradedRetryAfter = 2

var notFound = Kind{Status: http.StatusNotFound, Slug: "not-found", Title: "Not found", Message: "This does not exist, or you cannot see it."}

// table is THE mapping from errors to kinds: the first row whose error
// matches (errors.Is) wins.
var table = []struct {
	Err  error
	Kind Kind
}{
	{tenancy.ErrNotFound, notFound},
	{billing.ErrInvalid, Kind{Status: http.StatusBadRequest, Slug: "invalid-request", Title: "Invalid request"}},
	{billing.ErrInvalidRange, Kind{Status: http.StatusBadRequest, Slug: "invalid-request", Title: "Invalid request"}},
	{ErrRouteNotFound, notFound},
	{tenancy.ErrUnauthenticated, Kind{Status: http.StatusUnauthorized, Slug: "unauthenticated", Title: "Authentication required",
		Message: "This link is invalid, already used or expired."}},
	{tenancy.ErrForbidden, Kind{Status: http.StatusForbidden, Slug: "forbidden", Title: "Forbidden",
		Message: "Your role in this organisation does not allow this."}},
	{ErrInsufficientScope, Kind{Status: http.StatusForbidden, Slug: "insufficient-scope", Title: "Insufficient scope"}},
	{tenancy.ErrDeletionProtected, Kind{Status: http.StatusConflict, Slug: "deletion-protected", Title: "Deletion protection is on"}},
	{tenancy.ErrNoNode, Kind{Status: http.StatusServiceUnavailable, Slug: "no-capacity", Title: "No data-plane capacity"}},
	{tenancy.ErrPayloadTooLarge, Kind{Status: http.StatusRequestEntityTooLarge, Slug: "payload-too-large", Title: "Payload too large"}},
	{tenancy.ErrRateLimited, Kind{Status: http.StatusTooManyRequests, Slug: "quota-rate-limited", Title: "Publish rate quota used up"}},
	{tenancy.ErrLimitReached, Kind{Status: http.StatusConflict, Slug: "limit-reached", Title: "Plan limit reached"}},
	{tenancy.ErrQuotaExceeded, Kind{Status: http.StatusConflict, Slug: "quota-exceeded", Title: "Quota exceeded"}},
	{tenancy.ErrInstanceUnavailable, Kind{Status: http.StatusConflict, Slug: "instance-unavailable", Title: "Instance unavailable"}},
	{tenancy.ErrNodeUnavailable, Kind{Status: http.StatusServiceUnavailable, Slug: "node-unavailable", Title: "Data-plane node unavailable"}},
	{tenancy.ErrOutcomeUnknown, Kind{Status: http.StatusGatewayTimeout, Slug: "publish-outcome-unknown", Title: "Publish outcome unknown"}},
	{tenancy.ErrLastOwner, Kind{Status: http.StatusConflict, Slug: "last-owner", Title: "An org must keep one owner",
		Message: "An organisation must keep at least one owner."}},
	{tenancy.ErrConflict, Kind{Status: http.StatusConflict, Slug: "conflict", Title: "Conflict"}},
	{ErrMalformed, Kind{Status: http.StatusBadRequest, Slug: "malformed-request", Title: "Malformed request"}},
	{ErrBodyTooLarge, Kind{Status: http.StatusRequestEntityTooLarge, Slug: "body-too-large", Title: "Request body too large"}},
	{ErrUnsupportedMedia, Kind{Status: http.StatusUnsupportedMediaType, Slug: "unsupported-media-type", Title: "Unsupported media type"}},
	{ErrPreconditionFailed, Kind{Status: http.StatusPreconditionFailed, Slug: "precondition-failed", Title: "Precondition failed"}},
	{tenancy.ErrStale, Kind{Status: http.StatusPreconditionFailed, Slug: "precondition-failed", Title: "Precondition failed"}},
	{idempotency.ErrMismatch, Kind{Status: http.StatusUnprocessableEntity, Slug: "idempotency-key-reused", Title: "Idempotency key reused"}},
	{idempotency.ErrInFlight, Kind{Status: http.StatusConflict, Slug: "idempotency-in-progress", Title: "Request in progress"}},
	{ErrMethodNotAllowed, Kind{Status: http.StatusMethodNotAllowed, Slug: "method-not-allowed", Title: "Method not allowed"}},
	{errRateLimited, Kind{Status: http.StatusTooManyRequests, Slug: "rate-limited", Title: "Too many requests"}},
}

// For returns the kind of err and whether it is known: a validation error,
// a row of the table, an unreachable database (Degraded) or a value the
// database refused (BadValue). Anything else is Internal, not known.
func For(err error) (Kind, bool) {
	var ve *tenancy.ValidationError
	if errors.As(err, &ve) {
		if ve.Conflict {
			return Taken, true
		}
		return Validation, true
	}
	for _, row := range table {
		if errors.Is(err, row.Err) {
			return row.Kind, true
		}
	}
	switch {
	case dberr.Unavailable(err):
		return Degraded, true
	case dberr.BadValue(err):
		return BadValue, true
	}
	return Internal, false
}

// Message is the sentence to show a person for err.
func Message(err error) string {
	k, known := For(err)
	if k.Message != "" || !known {
		return k.Message
	}
	return err.Error()
}
