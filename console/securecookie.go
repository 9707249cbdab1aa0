package console

import (
	"net/http"
	"strings"
)

// secureCookiesOverTLS marks every cookie the console sets Secure when the
// request came over TLS, directly or through a proxy that terminated it
// (X-Forwarded-Proto: https), whatever Deps.Secure says.
func secureCookiesOverTLS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil && !strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&secureCookieWriter{ResponseWriter: w}, r)
	})
}

type secureCookieWriter struct {
	http.ResponseWriter
	done bool
}

func (s *secureCookieWriter) mark() {
	if s.done {
		return
	}
	s.done = true
	h := s.Header()
	for i, v := range h["Set-Cookie"] {
		if !strings.Contains(strings.ToLower(v), "; secure") {
			h["Set-Cookie"][i] = v + "; Secure"
		}
	}
}

func (s *secureCookieWriter) WriteHeader(code int) { s.mark(); s.ResponseWriter.WriteHeader(code) }

func (s *secureCookieWriter) Write(b []byte) (int, error) { s.mark(); return s.ResponseWriter.Write(b) }

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *secureCookieWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush forwards to the underlying writer (server-sent updates).
func (s *secureCookieWriter) Flush() {
	s.mark()
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
