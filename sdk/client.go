// Package sdk is the Go client of Aerie's REST API. aerie.gen.go is
// generated from openapi.yaml by oapi-codegen (one method per operationId on
// ClientWithResponses); this file adds what every caller needs on top:
// authentication with an API key or a login, retries that are safe thanks to
// Idempotency-Key, ETag/If-Match helpers, pagination iterators and
// problem+json answers as Go errors (*Error).
package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure New.
type Options struct {
	// BaseURL is the API's root, e.g. http://localhost:8080 (no /v1).
	BaseURL string
	// APIKey authenticates every request (aer_<prefix>_<secret>). When
	// empty, Email and Password log in and the session is refreshed when
	// the access token expires.
	APIKey   string
	Email    string
	Password string
	// HTTPClient sends the requests; nil means a client with a 60 s timeout.
	HTTPClient *http.Client
	// MaxRetries bounds retries of one request (default 4; negative: none).
	MaxRetries int
	// RetryBase is the first backoff (default 200 ms; doubled each time,
	// Retry-After wins when the server sends one).
	RetryBase time.Duration
	// Wait, when > 0, asks every configuration change to answer only once
	// the data-plane nodes apply it (read-your-writes: `Prefer: wait=N`,
	// seconds). Servers that do not know the preference ignore it.
	Wait time.Duration
	// UserAgent is sent as User-Agent (default "aerie-go-sdk").
	UserAgent string
}

// API is the generated client with authentication, retries and
// helpers. Every operation of openapi.yaml is a method of the embedded
// *ClientWithResponses.
type API struct {
	*ClientWithResponses
	opts Options
	tr   *transport
}

// New returns an API client. With Email/Password it logs in first.
func New(ctx context.Context, o Options) (*API, error) {
	if o.BaseURL == "" {
		return nil, errors.New("sdk: BaseURL is required")
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 4
	}
	if o.RetryBase == 0 {
		o.RetryBase = 200 * time.Millisecond
	}
	if o.UserAgent == "" {
		o.UserAgent = "aerie-go-sdk"
	}
	tr := &transport{o: o, hc: o.HTTPClient, token: o.APIKey}
	gen, err := NewClientWithResponses(o.BaseURL, WithHTTPClient(tr))
	if err != nil {
		return nil, fmt.Errorf("sdk: %w", err)
	}
	c := &API{ClientWithResponses: gen, opts: o, tr: tr}
	tr.refresh = c.refreshSession
	if o.APIKey == "" {
		if o.Email == "" {
			return nil, errors.New("sdk: an APIKey or Email and Password are required")
		}
		if err := c.login(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Token is the bearer token in use (the API key or the current access
// token).
func (c *API) Token() string {
	c.tr.mu.Lock()
	defer c.tr.mu.Unlock()
	return c.tr.token
}

// Session is the login session (nil with an API key).
func (c *API) Session() *Session {
	c.tr.mu.Lock()
	defer c.tr.mu.Unlock()
	return c.tr.session
}

func (c *API) login(ctx context.Context) error {
	r, err := c.LoginWithResponse(ctx, nil, LoginJSONRequestBody{Email: c.opts.Email, Password: c.opts.Password}, noAuth)
	if err := Check(r, err); err != nil {
		return fmt.Errorf("sdk: login: %w", err)
	}
	c.tr.setSession(r.JSON200)
	return nil
}

// refreshSession renews the access token after a 401 (logging in again
// when the refresh token is gone).
func (c *API) refreshSession(ctx context.Context) error {
	s := c.Session()
	if s == nil {
		return errors.New("no session")
	}
	r, err := c.RefreshWithResponse(ctx, nil, RefreshJSONRequestBody{RefreshToken: s.RefreshToken}, noAuth)
	if err == nil && r.JSON200 != nil {
		c.tr.setSession(r.JSON200)
		return nil
	}
	return c.login(ctx)
}

type ctxKey int

const noAuthKey ctxKey = 1

// noAuth marks a request that must not carry the bearer token nor refresh
// on 401 (login, refresh).
func noAuth(_ context.Context, req *http.Request) error {
	req.Header.Set("X-Aerie-No-Auth", "1")
	return nil
}

// WithIfMatch sends If-Match: etag (PATCH/PUT answer 412 when the resource
// changed since it was read).
func WithIfMatch(etag string) RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		if etag != "" {
			req.Header.Set("If-Match", etag)
		}
		return nil
	}
}

// WithIfNoneMatch sends If-None-Match: etag (reads answer 304 Not Modified
// when the resource did not change).
func WithIfNoneMatch(etag string) RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		return nil
	}
}

// WithIdempotencyKey sets the Idempotency-Key of a POST (the SDK otherwise
// picks a random one per call, reused by its retries).
func WithIdempotencyKey(key string) RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Header.Set("Idempotency-Key", key)
		return nil
	}
}

// MaxWaitSeconds is the longest `Prefer: wait` the API honours.
const MaxWaitSeconds = 30

// WithWait asks a configuration change to answer once the nodes applied it
// (`Prefer: wait=N`); see Options.Wait.
func WithWait(d time.Duration) RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		setWait(req, d)
		return nil
	}
}

func setWait(req *http.Request, d time.Duration) {
	if d > 0 && req.Header.Get("Prefer") == "" {
		req.Header.Set("Prefer", "wait="+strconv.Itoa(min(int((d+time.Second-1)/time.Second), MaxWaitSeconds)))
	}
}

// ETag returns the ETag of a generated response (any *XxxResponse), or "".
func ETag(resp interface{ StatusCode() int }) string {
	if h := httpResponse(resp); h != nil {
		return h.Header.Get("ETag")
	}
	return ""
}

// transport adds auth, idempotency keys and retries to every request.
type transport struct {
	o       Options
	hc      *http.Client
	mu      sync.Mutex
	token   string
	session *Session
	refresh func(context.Context) error
}

func (t *transport) setSession(s *Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.session, t.token = s, s.AccessToken
}

func newKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Do sends req, retrying transport errors and 429/502/503/504 answers on
// requests that are safe to repeat (GET, HEAD, PUT, DELETE, and POST with
// an Idempotency-Key, which the SDK always sets), and 429/503 on any (the
// server did not process them).
func (t *transport) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("sdk: read request body: %w", err)
		}
		body = b
	}
	anon := req.Header.Get("X-Aerie-No-Auth") != ""
	req.Header.Del("X-Aerie-No-Auth")
	req.Header.Set("User-Agent", t.o.UserAgent)
	if req.Method == http.MethodPost && req.Header.Get("Idempotency-Key") == "" {
		req.Header.Set("Idempotency-Key", newKey())
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		setWait(req, t.o.Wait)
	}
	safe := req.Method != http.MethodPatch
	refreshed := false
	for attempt := 0; ; attempt++ {
		r := req.Clone(ctx)
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		if !anon {
			t.mu.Lock()
			tok := t.token
			t.mu.Unlock()
			if tok != "" {
				r.Header.Set("Authorization", "Bearer "+tok)
			}
		}
		resp, err := t.hc.Do(r)
		retry := false
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, err
			}
			retry = safe
		case resp.StatusCode == http.StatusUnauthorized && !anon && t.o.APIKey == "" && !refreshed && t.refresh != nil:
			drain(resp)
			refreshed = true
			if rerr := t.refresh(ctx); rerr != nil {
				return nil, fmt.Errorf("sdk: refresh session: %w", rerr)
			}
			attempt--
			continue
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			retry = true
			wait = retryAfter(resp)
		case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
			retry = safe
		}
		if !retry || attempt >= t.o.MaxRetries || t.o.MaxRetries < 0 {
			return resp, err
		}
		if resp != nil {
			drain(resp)
		}
		if wait == 0 {
			wait = t.o.RetryBase << attempt
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
}

func retryAfter(resp *http.Response) time.Duration {
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 && s <= 60 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// Error is an API error: a problem+json answer (RFC 9457), or any other
// non-2xx answer.
type Error struct {
	Status    int
	Type      string // e.g. https://aerie.dev/problems/not-found
	Title     string
	Detail    string
	RequestID string
	// Fields are the field-level errors of a validation problem.
	Fields []FieldError
}

// FieldError is one invalid field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, e.Title)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "; %s %s", f.Field, f.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request " + e.RequestID + ")")
	}
	return b.String()
}

// IsNotFound reports whether err is a 404 API error.
func IsNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// IsConflict reports whether err is a 409 API error (e.g. a taken name).
func IsConflict(err error) bool { return statusOf(err) == http.StatusConflict }

// IsPreconditionFailed reports whether err is a 412 (If-Match no longer
// matches).
func IsPreconditionFailed(err error) bool { return statusOf(err) == http.StatusPreconditionFailed }

func statusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Check turns a generated response and its error into an error: nil for a
// 2xx or 304 answer, *Error otherwise.
//
//	r, err := c.GetInstanceWithResponse(ctx, org, id)
//	if err := sdk.Check(r, err); err != nil { … }
func Check(resp interface{ StatusCode() int }, err error) error {
	if err != nil {
		return err
	}
	h := httpResponse(resp)
	if h == nil {
		return errors.New("sdk: no response")
	}
	if h.StatusCode/100 == 2 || h.StatusCode == http.StatusNotModified {
		return nil
	}
	return ErrorFrom(h, bodyOf(resp))
}

// ErrorFrom decodes a non-2xx answer into *Error.
func ErrorFrom(h *http.Response, body []byte) *Error {
	var p struct {
		Type      string       `json:"type"`
		Title     string       `json:"title"`
		Detail    string       `json:"detail"`
		RequestID string       `json:"request_id"`
		Errors    []FieldError `json:"errors"`
	}
	e := &Error{Status: h.StatusCode, Title: http.StatusText(h.StatusCode), RequestID: h.Header.Get("X-Request-Id")}
	if json.Unmarshal(body, &p) == nil && p.Title != "" {
		e.Type, e.Title, e.Detail, e.Fields = p.Type, p.Title, p.Detail, p.Errors
		if p.RequestID != "" {
			e.RequestID = p.RequestID
		}
	}
	return e
}
