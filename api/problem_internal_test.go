package api

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestProblemForDatabaseErrors: a Postgres data exception is the client's
// 400, a lost database is 503 service-degraded, anything else stays 500.
func TestProblemForDatabaseErrors(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		slug   string
	}{
		{fmt.Errorf("insert: %w", &pgconn.PgError{Code: "22021"}), http.StatusBadRequest, "invalid-value"},
		{fmt.Errorf("insert: %w", &pgconn.PgError{Code: "22003"}), http.StatusBadRequest, "invalid-value"},
		{fmt.Errorf("query: %w", &pgconn.PgError{Code: "57P01"}), http.StatusServiceUnavailable, "service-degraded"},
		{fmt.Errorf("query: %w", &pgconn.PgError{Code: "08006"}), http.StatusServiceUnavailable, "service-degraded"},
		{fmt.Errorf("acquire: %w", &pgconn.ConnectError{}), http.StatusServiceUnavailable, "service-degraded"},
		{fmt.Errorf("query: %w", &pgconn.PgError{Code: "42P01"}), http.StatusInternalServerError, "internal"},
	} {
		p := ProblemFor(c.err)
		if p.Status != c.status || p.Type != ProblemTypeBase+c.slug {
			t.Errorf("%v: %d %s, want %d %s", c.err, p.Status, p.Type, c.status, c.slug)
		}
	}
}
