package safelog

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// LimitOptions configure PerClient.
type LimitOptions struct {
	// Burst lines per client are written in each window; default 5.
	Burst int
	// Window is how long a client's budget lasts; default one minute. At
	// its end one summary line counts the lines suppressed in it.
	Window time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// PerClient wraps h so that each client causes at most Burst lines per
// Window, then one summary line ("log lines suppressed", with the count) at
// the end of the window. DEBUG lines have a budget of their own, so that
// with debug logging on a client's routine debug lines do not hide its
// errors (at most 2 × (Burst + 1) lines per client per window). A record's client is its "client" attribute
// (prefixed with its "instance" attribute when that is not already part of
// it), else the host of its "remote" attribute; records naming neither are
// not limited. Attributes added with WithAttrs count too. Handlers derived
// with WithAttrs/WithGroup share the budgets.
func PerClient(h slog.Handler, o LimitOptions) slog.Handler {
	if o.Burst <= 0 {
		o.Burst = 5
	}
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &limitHandler{next: h, st: &limitState{o: o, keys: map[string]*window{}}}
}

// debugBudget prefixes the key of a client's DEBUG lines' budget.
const debugBudget = "\x00debug "

type limitState struct {
	o      LimitOptions
	mu     sync.Mutex
	keys   map[string]*window
	lastGC time.Time
}

type window struct {
	start      time.Time
	n          int
	suppressed int
	level      slog.Level  // highest level suppressed
	timer      *time.Timer // writes the summary at the window's end
}

type limitHandler struct {
	next slog.Handler
	st   *limitState
	// from WithAttrs
	client, instance, remote string
}

func (l *limitHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return l.next.Enabled(ctx, lv)
}

func (l *limitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *l
	n.next = l.next.WithAttrs(as)
	for _, a := range as {
		n.note(a)
	}
	return &n
}

func (l *limitHandler) WithGroup(name string) slog.Handler {
	n := *l
	n.next = l.next.WithGroup(name)
	return &n
}

func (l *limitHandler) note(a slog.Attr) {
	switch a.Key {
	case "client", "client_id":
		if s := a.Value.Resolve().String(); s != "" {
			l.client = s
		}
	case "instance":
		l.instance = a.Value.Resolve().String()
	case "remote":
		l.remote = a.Value.Resolve().String()
	}
}

// key names the client a record is about ("" when none).
func (l *limitHandler) key(rec slog.Record) string {
	k := *l
	rec.Attrs(func(a slog.Attr) bool {
		k.note(a)
		return true
	})
	switch {
	case k.client != "" && k.instance != "" && !strings.HasPrefix(k.client, k.instance+"/"):
		return k.instance + "/" + k.client
	case k.client != "":
		return k.client
	case k.remote != "":
		if host, _, err := net.SplitHostPort(k.remote); err == nil {
			return "remote " + host
		}
		return "remote " + k.remote
	}
	return ""
}

func (l *limitHandler) Handle(ctx context.Context, rec slog.Record) error {
	key := l.key(rec)
	if key == "" {
		return l.next.Handle(ctx, rec)
	}
	if rec.Level < slog.LevelInfo {
		key = debugBudget + key
	}
	st := l.st
	now := st.o.Now()
	st.mu.Lock()
	st.gc(now)
	w := st.keys[key]
	if w == nil || now.Sub(w.start) >= st.o.Window && w.suppressed == 0 {
		w = &window{start: now}
		st.keys[key] = w
	}
	w.n++
	if w.n <= st.o.Burst {
		st.mu.Unlock()
		return l.next.Handle(ctx, rec)
	}
	w.suppressed++
	w.level = max(w.level, rec.Level)
	if w.timer == nil {
		next := l.next
		w.timer = time.AfterFunc(max(w.start.Add(st.o.Window).Sub(now), 0), func() { st.flush(key, w, next) })
	}
	st.mu.Unlock()
	return nil
}

// flush writes the summary of w's window and ends it.
func (st *limitState) flush(key string, w *window, next slog.Handler) {
	st.mu.Lock()
	n, lv := w.suppressed, w.level
	if st.keys[key] == w {
		delete(st.keys, key)
	}
	w.suppressed = 0
	st.mu.Unlock()
	if n == 0 {
		return
	}
	rec := slog.NewRecord(st.o.Now(), lv, "log lines suppressed", 0)
	key = strings.TrimPrefix(key, debugBudget)
	if host, ok := strings.CutPrefix(key, "remote "); ok {
		rec.AddAttrs(slog.String("remote", host))
	} else {
		rec.AddAttrs(slog.String("client", key))
	}
	rec.AddAttrs(slog.Int("suppressed", n), slog.Duration("window", st.o.Window))
	_ = next.Handle(context.Background(), rec)
}

// gc drops windows that ended without suppressing anything (those that
// did are dropped by their summary).
func (st *limitState) gc(now time.Time) {
	if now.Sub(st.lastGC) < st.o.Window {
		return
	}
	st.lastGC = now
	for k, w := range st.keys {
		if w.suppressed == 0 && w.timer == nil && now.Sub(w.start) >= st.o.Window {
			delete(st.keys, k)
		}
	}
}
