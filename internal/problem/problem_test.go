package problem

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/aeriemq/aerie/internal/idempotency"
	"github.com/aeriemq/aerie/tenancy"
)

// TestFor: each error has one status for the API and the console, and the
// console's sentence (what its own mapping said before the table was
// shared) or the error's text.
func TestFor(t *testing.T) {
	for _, c := range []struct {
		err     error
		status  int
		slug    string
		message string
	}{
		{fmt.Errorf("org o-1: %w", tenancy.ErrNotFound), http.StatusNotFound, "not-found", "This does not exist, or you cannot see it."},
		{tenancy.ErrForbidden, http.StatusForbidden, "forbidden", "Your role in this organisation does not allow this."},
		{tenancy.ErrLastOwner, http.StatusConflict, "last-owner", "An organisation must keep at least one owner."},
		{fmt.Errorf("%w: name taken", tenancy.ErrConflict), http.StatusConflict, "conflict", "conflict: name taken"},
		{tenancy.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated", "This link is invalid, already used or expired."},
		{fmt.Errorf("%w: the free plan allows 2", tenancy.ErrLimitReached), http.StatusConflict, "limit-reached", "plan limit reached: the free plan allows 2"},
		{&tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "name", Message: "required"}}}, http.StatusBadRequest, "validation-error", "invalid input: name: required"},
		{&tenancy.ValidationError{Conflict: true, Fields: []tenancy.FieldError{{Field: "name", Message: "taken"}}}, http.StatusConflict, "conflict", "invalid input: name: taken"},
		{idempotency.ErrMismatch, http.StatusUnprocessableEntity, "idempotency-key-reused", idempotency.ErrMismatch.Error()},
		{&RateLimitedError{}, http.StatusTooManyRequests, "rate-limited", "too many requests"},
		{fmt.Errorf("query: %w", &pgconn.PgError{Code: "08006"}), http.StatusServiceUnavailable, "service-degraded", "The service is degraded for a moment. Try again in a few seconds."},
		{fmt.Errorf("insert: %w", &pgconn.PgError{Code: "22021"}), http.StatusBadRequest, "invalid-value", "A value is out of range or cannot be stored."},
		{errors.New("boom"), http.StatusInternalServerError, "internal", "Something went wrong on our side. Try again."},
	} {
		k, _ := For(c.err)
		if k.Status != c.status || k.Slug != c.slug {
			t.Errorf("%v: %d %s, want %d %s", c.err, k.Status, k.Slug, c.status, c.slug)
		}
		if m := Message(c.err); m != c.message {
			t.Errorf("%v: message %q, want %q", c.err, m, c.message)
		}
	}
}
