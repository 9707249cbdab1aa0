// Package safelog keeps secrets and tenant data out of the log, whatever a
// call site passes: Redact drops the values of secret-looking keys and of
// composite values (packets, wills, client state, byte slices) and scrubs
// passwords out of strings; PerClient rate-limits the lines each client can
// cause (first few per window, then one summary line with a count).
//
// Both are slog.Handler wrappers, so every call site behind them is covered,
// including the vendored mochi-mqtt's and ones not written yet.
package safelog

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
)

// Redacted replaces a value that must not be logged.
const Redacted = "[redacted]"

// secretKeys are attribute-key fragments whose non-numeric values are never
// written: credentials, and message contents (payloads belong to tenants).
var secretKeys = []string{
	"password", "passwd", "secret", "token", "apikey", "api_key", "api-key",
	"authorization", "cookie", "payload", "dsn", "database_url",
}

// Redact wraps h so that records reach it without secrets: see the package
// doc. It costs one pass over the record's attributes.
func Redact(h slog.Handler) slog.Handler {
	if _, ok := h.(redactHandler); ok {
		return h
	}
	return redactHandler{h}
}

type redactHandler struct{ next slog.Handler }

func (r redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return r.next.Enabled(ctx, l)
}

func (r redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, ScrubString(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(RedactAttr(a))
		return true
	})
	return r.next.Handle(ctx, out)
}

func (r redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = RedactAttr(a)
	}
	return redactHandler{r.next.WithAttrs(clean)}
}

func (r redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{r.next.WithGroup(name)}
}

// SecretKey reports whether values under key are never logged.
func SecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// RedactAttr returns a with nothing secret left in it.
func RedactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := v.Group()
		clean := make([]slog.Attr, len(g))
		for i, x := range g {
			clean[i] = RedactAttr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(clean...)}
	}
	if SecretKey(a.Key) {
		switch v.Kind() {
		case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
			return slog.Attr{Key: a.Key, Value: v} // sizes, counts, expiry times
		}
		return slog.String(a.Key, Redacted)
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, ScrubString(v.String()))
	case slog.KindAny:
		return slog.Attr{Key: a.Key, Value: redactAny(v.Any())}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// redactAny keeps basic values, writes errors and Stringers as scrubbed
// text, and replaces anything composite (a packet, a will, a client, a
// request, a byte slice) by its type: their fields hold passwords and
// payloads.
func redactAny(x any) slog.Value {
	if x == nil {
		return slog.AnyValue(nil)
	}
	switch t := x.(type) {
	case error:
		return slog.StringValue(ScrubString(t.Error()))
	case []byte:
		return slog.StringValue(fmt.Sprintf("[%d bytes]", len(t)))
	case fmt.Stringer:
		return slog.StringValue(ScrubString(t.String()))
	}
	rt := reflect.TypeOf(x)
	if basic(rt.Kind()) {
		if rt.Kind() == reflect.String {
			return slog.StringValue(ScrubString(reflect.ValueOf(x).String()))
		}
		return slog.AnyValue(x)
	}
	if (rt.Kind() == reflect.Slice || rt.Kind() == reflect.Array) && basic(rt.Elem().Kind()) &&
		rt.Elem().Kind() != reflect.Uint8 && rt.Elem().Kind() != reflect.String {
		return slog.AnyValue(x)
	}
	if rt.Kind() == reflect.Slice && rt.Elem().Kind() == reflect.String {
		v := reflect.ValueOf(x)
		out := make([]string, v.Len())
		for i := range out {
			out[i] = ScrubString(v.Index(i).String())
		}
		return slog.AnyValue(out)
	}
	return slog.StringValue("[" + rt.String() + " " + Redacted + "]")
}

func basic(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.String:
		return true
	}
	return false
}

var (
	urlPassword = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]+@`)
	kvPassword  = regexp.MustCompile(`(?i)\b(password|passwd|pwd|secret)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s&;,]+)`)
	bearer      = regexp.MustCompile(`(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+`)
	// Aerie's own secrets: API keys (aer_), node tokens (aen_), the
	// operator token (aea_), refresh tokens (aerr_); and any JWT (device
	// tokens, console sessions).
	aerieToken = regexp.MustCompile(`\b(aer|aen|aea|aerr)_[A-Za-z0-9_-]{8,}`)
	jwtLike    = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)
)

// ScrubString masks the passwords in URLs ("postgres://u:pw@h"), in
// key=value text ("password=pw"), bearer/basic credentials, Aerie's API
// keys and tokens, and JWTs.
func ScrubString(s string) string {
	if len(s) < 8 {
		return s
	}
	l := strings.ToLower(s)
	if strings.Contains(l, "://") {
		s = urlPassword.ReplaceAllString(s, "${1}xxxxx@")
	}
	if strings.Contains(l, "pass") || strings.Contains(l, "pwd") || strings.Contains(l, "secret") {
		s = kvPassword.ReplaceAllString(s, "${1}${2}xxxxx")
	}
	if strings.Contains(l, "bearer") || strings.Contains(l, "basic") {
		s = bearer.ReplaceAllString(s, "${1}${2}xxxxx")
	}
	if strings.Contains(s, "ae") {
		s = aerieToken.ReplaceAllString(s, "${1}_xxxxx")
	}
	if strings.Contains(s, "eyJ") {
		s = jwtLike.ReplaceAllString(s, "[jwt redacted]")
	}
	return s
}
