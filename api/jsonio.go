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
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aeriemq/aerie/internal/problem"
	"github.com/aeriemq/aerie/tenancy"
)

// MaxBodyBytes is the largest request body accepted (413 above it).
const MaxBodyBytes = 1 << 20

// DecodeJSON decodes the request body strictly into dst: Content-Type must be
// JSON in UTF-8 (415 otherwise), the body at most MaxBodyBytes, valid UTF-8,
// no duplicate keys, no number beyond float64 range, no unknown fields, one
// value only, and no NUL character in any string unless its struct field is
// tagged `aerie:"binary"`. The error maps to 400/413/415 through WriteError.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return fmt.Errorf("%w: send Content-Type: application/json", problem.ErrUnsupportedMedia)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return fmt.Errorf("%w: JSON must be UTF-8 (charset=%s sent)", problem.ErrUnsupportedMedia, safeName(cs))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return decodeError(err)
	}
	if err := checkJSONText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err)
		}
		return fmt.Errorf("%w: body must hold a single JSON value", problem.ErrMalformed)
	}
	if f := nulField(reflect.ValueOf(dst), ""); f != "" {
		return &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: f, Message: "must not contain NUL characters (use base64 for binary data)"}}}
	}
	return nil
}

// checkJSONText refuses what encoding/json would silently accept: invalid
// UTF-8 (it would become U+FFFD), duplicate object keys (the last would win)
// and numbers out of float64 range.
func checkJSONText(body []byte) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: the body is not valid UTF-8", problem.ErrMalformed)
	}
	if loneSurrogate(body) {
		return fmt.Errorf("%w: the body holds a lone UTF-16 surrogate escape", problem.ErrMalformed)
	}
	type frame struct {
		obj     bool
		wantKey bool
		keys    map[string]struct{}
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return decodeError(err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.obj && top.wantKey {
			key, _ := tok.(string)
			if _, dup := top.keys[key]; dup {
				return fmt.Errorf("%w: duplicate key %q in a JSON object", problem.ErrMalformed, safeName(key))
			}
			if strings.ContainsRune(key, 0) {
				return fmt.Errorf("%w: a JSON key holds a NUL character", problem.ErrMalformed)
			}
			top.keys[key] = struct{}{}
			top.wantKey = false
			continue
		}
		if top != nil && top.obj {
			top.wantKey = true // after this value comes a key or '}'
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' {
				stack = append(stack, &frame{obj: true, wantKey: true, keys: map[string]struct{}{}})
			} else {
				stack = append(stack, &frame{})
			}
		case json.Number:
			if _, err := strconv.ParseFloat(string(v), 64); err != nil {
				return &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: "(number)", Message: "number " + safeName(string(v)) + " is out of range"}}}
			}
		}
	}
}

// loneSurrogate reports a \uD800–\uDFFF escape that is not a high
// surrogate followed by a low one (encoding/json would turn it into U+FFFD).
func loneSurrogate(b []byte) bool {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
		return rune(v), err == nil
	}
	inStr := false
	for i := 0; i < len(b); i++ {
		switch {
		case !inStr:
			inStr = b[i] == '"'
		case b[i] == '"':
			inStr = false
		case b[i] == '\\':
			r, ok := hex4(i)
			if !ok {
				i++ // a one-character escape
				continue
			}
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return true
			case r >= 0xD800 && r <= 0xDBFF:
				lo, ok := hex4(i + 6)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return true
				}
				i += 6
			}
			i += 5
		}
	}
	return false
}

// nulField returns the JSON name of the first string in v holding a NUL
// character, skipping struct fields tagged `aerie:"binary"`.
func nulField(v reflect.Value, name string) string {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return ""
		}
		return nulField(v.Elem(), name)
	case reflect.String:
		if strings.ContainsRune(v.String(), 0) {
			return cmpName(name)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return "" // []byte is base64 in JSON
		}
		for i := 0; i < v.Len(); i++ {
			if f := nulField(v.Index(i), name); f != "" {
				return f
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if f := nulField(it.Value(), name); f != "" {
				return f
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() || sf.Tag.Get("aerie") == "binary" {
				continue
			}
			n, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if n == "-" {
				continue
			}
			if n == "" {
				n = sf.Name
			}
			if sf.Anonymous {
				n = name
			}
			if f := nulField(v.Field(i), n); f != "" {
				return f
			}
		}
	}
	return ""
}

func cmpName(n string) string {
	if n == "" {
		return "(body)"
	}
	return n
}

func decodeError(err error) error {
	var mbe *http.MaxBytesError
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: at most %d bytes", problem.ErrBodyTooLarge, MaxBodyBytes)
	case errors.As(err, &ute):
		return &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: ute.Field, Message: "must be " + ute.Type.String()}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &tenancy.ValidationError{Fields: []tenancy.FieldError{{Field: f, Message: "unknown field"}}}
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty body", problem.ErrMalformed)
	}
	return fmt.Errorf("%w: %v", problem.ErrMalformed, err)
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
// problem.ErrPreconditionFailed (412).
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
	return fmt.Errorf("%w: If-Match does not match the current ETag %s", problem.ErrPreconditionFailed, tag)
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
		// A cursor this API returned holds a key: valid UTF-8, no NUL.
		if err != nil || json.Unmarshal(raw, &c) != nil || c.After == "" || !utf8.ValidString(c.After) || strings.ContainsRune(c.After, 0) {
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
