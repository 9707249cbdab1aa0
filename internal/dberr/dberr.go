// Package dberr classifies Postgres errors for callers that must answer
// differently when the database is unreachable (retry later) or when a value
// could not be stored (the client's fault), instead of failing as internal.
package dberr

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable reports whether err means the database cannot be reached right
// now: connection refused or reset, the server shutting down or starting up,
// too many connections, a lost connection, a closed pool.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // admin/crash shutdown, cannot connect now
			pe.Code == "53300", // too many connections
			pe.Code == "25006" && strings.Contains(pe.Message, "recovery"): // read-only during recovery
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ENOENT) && strings.Contains(err.Error(), ".s.PGSQL") ||
		strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "closed pool")
}

// BadValue reports whether err is a Postgres data exception (SQLSTATE class
// 22: a value out of range, a NUL or invalid byte in text, a malformed
// number or date): the request carried a value the database cannot store.
func BadValue(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22")
}
