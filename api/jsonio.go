package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/aeriemq/aerie/tenancy"
)

// MaxBodyBytes is the largest request body accepted (413 above it).
const MaxBodyBytes = 1 << 20

// DecodeJSON decodes the request body strictly into dst: Content-Type must be
// JSON, the body at most MaxBodyBytes, no unknown fields, one value only.
// The error maps to 400/413/415 through WriteError.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return fmt.Errorf("%w: send Content-Type: application/json", ErrUnsupportedMedia)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err)
		}
		return fmt.Errorf("%w: body must hold a single JSON value", ErrMalformed)
	}
	return nil
}

func decodeError(err error) error {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: at most %d bytes", ErrBodyTooLarge, MaxBodyBytes)
	case errors.As(err, &ute):
		return &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: ute.Field, Message: "must be " + ute.Type.String()}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: f, Message: "unknown field"}}}
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty body", ErrMalformed)
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ETag returns a strong entity tag for a representation: a hash of its JSON.
func ETag(v any) string {
	if e, ok := v.(interface{ etagView() any }); ok {
		v = e.etagView() // leaves out fields that are state, not content
	}
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return `"` + base64.RawURLEncoding.EncodeToString(h[:16]) + `"`
}

// WriteJSONWithETag writes v with status and its ETag header (use for every
// read of a resource, and for the response of an update).
func WriteJSONWithETag(w http.ResponseWriter, status int, v any) {
	w.Header().Set("ETag", ETag(v))
	WriteJSON(w, status, v)
}

// CheckIfMatch compares If-Match with the current representation's ETag:
// nil when the header is absent, "*", or lists the current tag; otherwise
// ErrPreconditionFailed (412).
func CheckIfMatch(r *http.Request, current any) error {
	h := r.Header.Get("If-Match")
	if h == "" {
		return nil
	}
	tag := ETag(current)
	for _, t := range strings.Split(h, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || t == tag {
			return nil
		}
	}
	return fmt.Errorf("%w: If-Match does not match the current ETag %s", ErrPreconditionFailed, tag)
}

// List is the envelope of every paginated response.
type List[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// Pagination limits.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)

type cursor struct {
	After string `json:"a"`
}

// ParsePage reads ?limit= (1..200, default 50) and ?cursor= (opaque, from a
// previous next_cursor) into a tenancy.Page.
func ParsePage(r *http.Request) (tenancy.Page, error) {
	p := tenancy.Page{Limit: DefaultPageLimit}
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		var n int
		if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 1 || n > MaxPageLimit || fmt.Sprint(n) != s {
			return p, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "limit", Message: fmt.Sprintf("must be an integer from 1 to %d", MaxPageLimit)}}}
		}
		p.Limit = n
	}
	if s := q.Get("cursor"); s != "" {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		var c cursor
		if err != nil || json.Unmarshal(raw, &c) != nil || c.After == "" {
			return p, &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "cursor", Message: "is not a cursor this API returned"}}}
		}
		p.After = c.After
	}
	return p, nil
}

// NextCursor encodes the key of a page's last item as next_cursor (nil at
// the end of the list).
func NextCursor(after string) *string {
	if after == "" {
		return nil
	}
	b, _ := json.Marshal(cursor{After: after})
	s := base64.RawURLEncoding.EncodeToString(b)
	return &s
}

// NewList builds a page of the list from items mapped by conv.
func NewList[S, T any](items []S, next string, conv func(S) T) List[T] {
	out := List[T]{Data: make([]T, 0, len(items)), NextCursor: NextCursor(next)}
	for _, it := range items {
		out.Data = append(out.Data, conv(it))
	}
	return out
}

// readBody reads a request body up to the limit and puts it back.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return nil, decodeError(err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}
