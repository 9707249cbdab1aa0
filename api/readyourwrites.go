package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aeriemq/aerie/tenancy"
)

// ConfigRevisionHeader carries the config revision a config-changing
// request produced (the highest, when it changed several nodes' config).
const ConfigRevisionHeader = "Aerie-Config-Revision"

// MaxConfigWait bounds `Prefer: wait=N` on config-changing requests.
const MaxConfigWait = 30 * time.Second

// preferWait returns the wait preference of RFC 7240 (`Prefer: wait=5`),
// capped at MaxConfigWait; 0 when absent or malformed.
func preferWait(h http.Header) time.Duration {
	for _, v := range h.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
			if err != nil || n <= 0 {
				return 0
			}
			return min(time.Duration(n)*time.Second, MaxConfigWait)
		}
	}
	return 0
}

// ReadYourWrites notes the config revisions a mutating request commits and
// answers with the highest in Aerie-Config-Revision. With `Prefer: wait=N`
// (N seconds, at most 30) a successful answer is held until every data-plane
// node the change went to has applied it, so a credential created is usable
// (and one disabled, rotated or deleted is refused) as soon as the client
// has the answer; it then carries `Preference-Applied: wait=N`. When N
// passes first the answer is 202 with the same body (the change is
// committed and will still reach the node).
func (a *API) ReadYourWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		ctx, revs := tenancy.RecordRevisions(r.Context())
		rw := &revisionWriter{ResponseWriter: w, revs: revs, hold: a.feed != nil && preferWait(r.Header) > 0}
		ctx = context.WithValue(ctx, rerenderKey{}, &rw.rerender)
		next.ServeHTTP(rw, r.WithContext(ctx))
		if !rw.held {
			return
		}
		wait := preferWait(r.Header)
		wctx, cancel := context.WithTimeout(r.Context(), wait)
		err := a.feed.WaitApplied(wctx, rw.pending)
		cancel()
		status := rw.status
		switch {
		case err == nil:
			w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
			if rw.rerender != nil {
				// The node applied the change: answer with what it is now
				// (an instance created is running, not provisioning).
				if body, etag, err := rw.rerender(r.Context()); err == nil {
					rw.buf.Reset()
					rw.buf.Write(body)
					w.Header().Set("ETag", etag)
				}
			}
		case r.Context().Err() != nil:
			return // the client left
		default:
			if !errors.Is(err, context.DeadlineExceeded) {
				a.log.Warn("read-your-writes wait failed", "error", err)
			}
			a.log.Info("config change not applied by its node within the wait", "revision", rw.pending.Max(), "wait", wait)
			status = http.StatusAccepted
		}
		w.WriteHeader(status)
		if r.Method != http.MethodHead && rw.buf.Len() > 0 {
			_, _ = w.Write(rw.buf.Bytes())
		}
	})
}

type rerenderKey struct{}

// rerenderFunc renders a resource as it is now: its JSON and ETag.
type rerenderFunc func(ctx context.Context) (body []byte, etag string, err error)

// rerenderAfterWait makes a held answer be rendered again once its change
// is applied (see ReadYourWrites): v is read again by read and converted
// by conv. Without `Prefer: wait` it does nothing.
func rerenderAfterWait[T, J any](r *http.Request, read func(ctx context.Context) (T, error), conv func(T) J) {
	slot, ok := r.Context().Value(rerenderKey{}).(*rerenderFunc)
	if !ok {
		return
	}
	*slot = func(ctx context.Context) ([]byte, string, error) {
		v, err := read(ctx)
		if err != nil {
			return nil, "", err
		}
		j := conv(v)
		b, err := json.Marshal(j)
		if err != nil {
			return nil, "", err
		}
		return append(b, '\n'), ETag(j), nil
	}
}

// revisionWriter adds the revision header at WriteHeader and, when the
// client asked to wait, holds a successful answer back until the change
// is applied.
type revisionWriter struct {
	http.ResponseWriter
	revs     func() tenancy.Revisions
	hold     bool // the client asked to wait
	wrote    bool
	held     bool // the answer is in buf, not sent
	status   int
	pending  tenancy.Revisions
	buf      bytes.Buffer
	rerender rerenderFunc // set by the handler: the answer once applied
}

func (rw *revisionWriter) WriteHeader(code int) {
	if rw.wrote {
		return
	}
	rw.wrote = true
	if code >= 200 && code < 300 {
		if revs := rw.revs(); len(revs) > 0 {
			rw.Header().Set(ConfigRevisionHeader, strconv.FormatInt(revs.Max(), 10))
			if rw.hold {
				rw.held, rw.status, rw.pending = true, code, revs
				return
			}
		}
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *revisionWriter) Write(b []byte) (int, error) {
	if !rw.wrote {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.held {
		return rw.buf.Write(b)
	}
	return rw.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (rw *revisionWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }
