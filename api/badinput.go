package api

import (
	"fmt"
	"net/http"
	"net/url"
	"unicode/utf8"

	"github.com/aeriemq/aerie/internal/problem"
)

// Input bounds checked by RejectBadInput before any handler runs.
const (
	MaxPathBytes        = 2048 // the decoded URL path
	MaxQueryValueBytes  = 4096 // one query key or value
	MaxHeaderValueBytes = 8192 // one header value
)

// RejectBadInput refuses (400 malformed-request, problem+json) any request
// whose path, query or header values hold bytes no handler (and no Postgres
// text column) can take: invalid UTF-8, NUL or other control characters, or
// values longer than the bounds above. It runs on every route, so a route
// added later is covered without anyone remembering; JSON bodies get the same
// treatment in DecodeJSON.
func RejectBadInput(write func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := checkRequestInput(r); err != nil {
				write(w, r, err)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func checkRequestInput(r *http.Request) error {
	if len(r.URL.Path) > MaxPathBytes {
		return fmt.Errorf("%w: the path is longer than %d bytes", problem.ErrMalformed, MaxPathBytes)
	}
	if err := checkText("the path", r.URL.Path, false); err != nil {
		return err
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fmt.Errorf("%w: the query string is not valid URL encoding", problem.ErrMalformed)
	}
	for k, vs := range q {
		if len(k) > MaxQueryValueBytes {
			return fmt.Errorf("%w: a query parameter name is longer than %d bytes", problem.ErrMalformed, MaxQueryValueBytes)
		}
		if err := checkText("a query parameter name", k, false); err != nil {
			return err
		}
		for _, v := range vs {
			if len(v) > MaxQueryValueBytes {
				return fmt.Errorf("%w: query parameter %q is longer than %d bytes", problem.ErrMalformed, safeName(k), MaxQueryValueBytes)
			}
			if err := checkText(fmt.Sprintf("query parameter %q", safeName(k)), v, false); err != nil {
				return err
			}
		}
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			if len(v) > MaxHeaderValueBytes {
				return fmt.Errorf("%w: header %s is longer than %d bytes", problem.ErrMalformed, k, MaxHeaderValueBytes)
			}
			if err := checkText("header "+k, v, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkText refuses invalid UTF-8 and control characters (tab allowed in
// headers, where HTTP allows it).
func checkText(what, s string, tabOK bool) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", problem.ErrMalformed, what)
	}
	for _, c := range s {
		if c < 0x20 && !(tabOK && c == '\t') || c == 0x7f {
			return fmt.Errorf("%w: %s holds a control character (U+%04X)", problem.ErrMalformed, what, c)
		}
	}
	return nil
}

// safeName shortens a client-sent name for an error message.
func safeName(s string) string {
	if len(s) > 64 || !utf8.ValidString(s) {
		return "(unprintable)"
	}
	return s
}
