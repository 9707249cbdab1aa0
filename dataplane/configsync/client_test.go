package configsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/nodelink"
)

const (
	testNode  = "n-1"
	testToken = "aen_n-1_s3cret"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeCP is a control plane speaking the watch/ack protocol. Each watch
// request is handed to watch with its 0-based number and since; send
// writes one ndjson line and flushes.
type fakeCP struct {
	t     *testing.T
	srv   *httptest.Server
	watch func(n int, since int64, send func(nodelink.Event), r *http.Request)

	mu      sync.Mutex
	sinces  []int64
	acks    []nodelink.Ack
	badReqs []string
	conns   int // TCP connections accepted
	ackCh   chan nodelink.Ack
}

func newFakeCP(t *testing.T, watch func(n int, since int64, send func(nodelink.Event), r *http.Request)) *fakeCP {
	f := &fakeCP{t: t, watch: watch, ackCh: make(chan nodelink.Ack, 1000)}
	mux := http.NewServeMux()
	prefix := "/internal/v1/nodes/" + testNode
	mux.HandleFunc("GET "+prefix+"/watch", f.handleWatch)
	mux.HandleFunc("POST "+prefix+"/ack", f.handleAck)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f.bad(r.Method + " " + r.URL.String())
		http.NotFound(w, r)
	})
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
		}
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCP) bad(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.badReqs = append(f.badReqs, what)
}

func (f *fakeCP) authorized(w http.ResponseWriter, r *http.Request) bool {
	if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
		f.bad("authorization " + got)
		http.Error(w, "bad token", http.StatusUnauthorized)
		return false
	}
	return true
}

func (f *fakeCP) handleWatch(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	since, err := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	if err != nil {
		f.bad("since " + r.URL.RawQuery)
		http.Error(w, "bad since", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	n := len(f.sinces)
	f.sinces = append(f.sinces, since)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w) // one event per line
	send := func(ev nodelink.Event) {
		if err := enc.Encode(ev); err != nil {
			return
		}
		_ = rc.Flush()
	}
	f.watch(n, since, send, r)
}

func (f *fakeCP) handleAck(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	var ack nodelink.Ack
	if err := json.NewDecoder(r.Body).Decode(&ack); err != nil {
		f.bad("ack body: " + err.Error())
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.acks = append(f.acks, ack)
	f.mu.Unlock()
	f.ackCh <- ack
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeCP) watchSinces() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.sinces...)
}

func (f *fakeCP) maxAck() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := int64(-1)
	for _, a := range f.acks {
		m = max(m, a.Revision)
	}
	return m
}

func (f *fakeCP) checkNoBadRequests() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.badReqs) > 0 {
		f.t.Errorf("unexpected requests: %q", f.badReqs)
	}
}

func (f *fakeCP) source() *nodelink.HTTPSource {
	return &nodelink.HTTPSource{BaseURL: f.srv.URL + "/", NodeID: testNode, Token: testToken}
}

// runClient starts c.Run and returns a stop function that cancels it and
// waits (bounded) for it to return.
func runClient(t *testing.T, c *configsync.Client) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func cred(id, user, password string) *nodelink.Credential {
	return &nodelink.Credential{ID: id, Username: user, SecretSHA256: secretHash(password), Enabled: true}
}

func auth(s *configsync.State, user, password string) configsync.AuthResult {
	_, res := s.CheckPassword("i-1", user, []byte(password), "client", time.Now())
	return res
}

// The event history of the fake control plane used by the client tests.
var (
	snapshot10 = nodelink.Event{Revision: 10, Kind: nodelink.KindSnapshot, Snapshot: &nodelink.Snapshot{Revision: 10, NodeID: testNode,
		Instances: []nodelink.Instance{{ID: "i-1", OrgID: "o-1", Status: nodelink.StatusRunning, Credentials: []nodelink.Credential{
			*cred("c-1", "dev-1", "pw-1"), *cred("c-2", "dev-2", "pw-2")}}}}}
	deltas = []nodelink.Event{
		{Revision: 11, Kind: nodelink.KindCredentialPut, InstanceID: "i-1", Credential: cred("c-3", "dev-3", "pw-3")},
		{Revision: 12, Kind: nodelink.KindCredentialDel, InstanceID: "i-1", ID: "c-2"},
		{Revision: 13, Kind: nodelink.KindACLPut, InstanceID: "i-1", ACLRule: &nodelink.ACLRule{
			ID: "r-1", Effect: nodelink.EffectAllow, Action: nodelink.ActionAll, Filter: "t/#"}},
		// after the first stream breaks:
		{Revision: 17, Kind: nodelink.KindCredentialPut, InstanceID: "i-1", Credential: cred("c-1", "dev-1", "pw-1-rotated")},
		{Revision: 20, Kind: nodelink.KindCredentialPut, InstanceID: "i-1", Credential: cred("c-4", "dev-4", "pw-4")},
	}
)

// history sends what a control plane sends for since: a snapshot at 10
// when since is 0 (or before it), then the deltas after since up to upTo.
func history(since, upTo int64, send func(nodelink.Event)) {
	if since < snapshot10.Revision {
		send(snapshot10)
		since = snapshot10.Revision
	}
	for _, ev := range deltas {
		if ev.Revision > since && ev.Revision <= upTo {
			send(ev)
		}
	}
}

func waitAck(t *testing.T, f *fakeCP, rev int64) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("an ack of revision %d (acked so far: %d)", rev, f.maxAck()),
		func() bool { return f.maxAck() >= rev })
}

func TestClientFollowsAcksAndResumes(t *testing.T) {
	firstDone := make(chan struct{})
	var f *fakeCP
	f = newFakeCP(t, func(n int, since int64, send func(nodelink.Event), r *http.Request) {
		switch n {
		case 0:
			history(since, 13, send)
			send(nodelink.Event{Revision: 13, Kind: nodelink.KindHeartbeat})
			// Drop the stream once the client acknowledged everything.
			select {
			case <-firstDone:
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			history(since, 20, send)
			for {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
					send(nodelink.Event{Revision: 21, Kind: nodelink.KindHeartbeat})
				}
			}
		}
	})
	dir := t.TempDir()
	state := configsync.NewState()
	var mu sync.Mutex
	var changes []configsync.Change
	state.OnChange(func(c configsync.Change) { mu.Lock(); changes = append(changes, c); mu.Unlock() })
	endpoints := map[string]string{"mqtt": "mqtt://n1.example:1883"}
	c, err := configsync.NewClient(configsync.Options{Source: f.source(), State: state, Dir: dir, Log: quietLog(),
		Endpoints: endpoints, Connections: func() int64 { return 42 },
		AckInterval: time.Hour, DeadAfter: 5 * time.Second, SaveDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Load(context.Background()); err != nil {
		t.Fatalf("Load with no snapshot on disk: %v", err)
	}
	stop := runClient(t, c)

	// First connection: snapshot and three deltas, acknowledged.
	waitAck(t, f, 13)
	if got := c.Revision(); got != 13 {
		t.Fatalf("revision after the first stream: %d, want 13", got)
	}
	if !c.Connected() {
		t.Error("Connected() is false with the stream open")
	}
	for user, want := range map[string]configsync.AuthResult{
		"dev-1": configsync.AuthOK, "dev-2": configsync.AuthBadCredentials, "dev-3": configsync.AuthOK, "dev-4": configsync.AuthBadCredentials} {
		if got := auth(state, user, "pw-"+strings.TrimPrefix(user, "dev-")); got != want {
			t.Errorf("after the first stream, %s: %d, want %d", user, got, want)
		}
	}
	if acl := state.ACL("i-1"); len(acl) != 1 || acl[0].ID != "r-1" {
		t.Errorf("ACL after the first stream: %+v", acl)
	}
	close(firstDone)

	// Second connection resumes after 13 and gets only 17 and 20.
	waitAck(t, f, 20)
	if got := f.watchSinces(); len(got) != 2 || got[0] != 0 || got[1] != 13 {
		t.Fatalf("watch requests with since=%v, want [0 13]", got)
	}
	if got := c.Revision(); got != 20 {
		t.Fatalf("revision: %d, want 20", got)
	}
	for user, pw := range map[string]string{"dev-1": "pw-1-rotated", "dev-3": "pw-3", "dev-4": "pw-4"} {
		if got := auth(state, user, pw); got != configsync.AuthOK {
			t.Errorf("%s: %d, want AuthOK", user, got)
		}
	}
	if got := auth(state, "dev-1", "pw-1"); got != configsync.AuthBadCredentials {
		t.Errorf("dev-1 with its old password: %d", got)
	}
	waitFor(t, time.Second, "Connected()", c.Connected)

	// Heartbeats (rev 21) keep the stream open and are not applied.
	time.Sleep(150 * time.Millisecond)
	if got := f.watchSinces(); len(got) != 2 {
		t.Errorf("reconnected during heartbeats: since=%v", got)
	}
	if c.Revision() != 20 {
		t.Errorf("a heartbeat moved the revision to %d", c.Revision())
	}

	stop()
	f.checkNoBadRequests()
	if c.Connected() {
		t.Error("Connected() after Run returned")
	}

	f.mu.Lock()
	acks := append([]nodelink.Ack(nil), f.acks...)
	f.mu.Unlock()
	seen := map[int64]bool{}
	prev := int64(-1)
	for _, a := range acks {
		if a.Connections != 42 || a.Endpoints["mqtt"] != endpoints["mqtt"] || len(a.Endpoints) != 1 {
			t.Errorf("ack %+v: want connections 42 and endpoints %v", a, endpoints)
		}
		if a.Revision < prev {
			t.Errorf("acks went back from %d to %d", prev, a.Revision)
		}
		prev = a.Revision
		seen[a.Revision] = true
	}
	if !seen[13] || !seen[20] || prev != 20 {
		t.Errorf("acked revisions %v, want 13 and 20 among them, 20 last", acks)
	}

	// Listeners heard the revocations.
	mu.Lock()
	var revoked []string
	for _, ch := range changes {
		if ch.Revoked {
			revoked = append(revoked, fmt.Sprintf("%d:%s", ch.Revision, ch.CredentialID))
		}
	}
	mu.Unlock()
	if strings.Join(revoked, ",") != "12:c-2,17:c-1" {
		t.Errorf("revoking changes %v, want [12:c-2 17:c-1]", revoked)
	}

	// Run saved the state on its way out.
	disk := configsync.NewState()
	if err := disk.LoadFile(filepath.Join(dir, configsync.SnapshotFile)); err != nil {
		t.Fatal(err)
	}
	if disk.Revision() != 20 || auth(disk, "dev-4", "pw-4") != configsync.AuthOK {
		t.Errorf("disk snapshot at revision %d", disk.Revision())
	}
	diffSnapshots(t, disk.Snapshot(), state.Snapshot())
}

// A stream silent for DeadAfter (no heartbeat either) is dropped and
// reopened from the applied revision.
func TestClientReopensSilentStream(t *testing.T) {
	cancelled := make(chan struct{})
	f := newFakeCP(t, func(n int, since int64, send func(nodelink.Event), r *http.Request) {
		switch n {
		case 0:
			history(since, 11, send)
			select { // silent until the client gives up
			case <-r.Context().Done():
				close(cancelled)
			case <-time.After(5 * time.Second):
			}
		default:
			history(since, 12, send)
			<-r.Context().Done()
		}
	})
	state := configsync.NewState()
	c, err := configsync.NewClient(configsync.Options{Source: f.source(), State: state, Dir: t.TempDir(), Log: quietLog(),
		DeadAfter: 200 * time.Millisecond, AckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	runClient(t, c)
	waitFor(t, 3*time.Second, "the second watch", func() bool { return len(f.watchSinces()) >= 2 })
	select {
	case <-cancelled:
	case <-time.After(time.Second):
		t.Fatal("the silent stream's request was not cancelled")
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("reconnected after %s, before DeadAfter", el)
	}
	if got := f.watchSinces(); got[0] != 0 || got[1] != 11 {
		t.Fatalf("watch since=%v, want [0 11 …]", got)
	}
	waitFor(t, 2*time.Second, "revision 12", func() bool { return c.Revision() == 12 })
	if auth(state, "dev-2", "pw-2") != configsync.AuthBadCredentials || auth(state, "dev-3", "pw-3") != configsync.AuthOK {
		t.Error("deltas 11 and 12 not applied")
	}
	f.checkNoBadRequests()
}

// A control plane that refuses the node: Run keeps going (it ends only
// with its context) but backs off for at least 10 s instead of hammering,
// and the state is untouched.
func TestClientNodeRejected(t *testing.T) {
	var mu sync.Mutex
	watches, acks := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if strings.HasSuffix(r.URL.Path, "/watch") {
			watches++
		} else {
			acks++
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"title":"Unauthorized","detail":"node token revoked"}`)
	}))
	defer srv.Close()

	dir := t.TempDir()
	prev := smallState(t) // what the node last knew, on disk
	if err := prev.SaveFile(filepath.Join(dir, configsync.SnapshotFile)); err != nil {
		t.Fatal(err)
	}
	state := configsync.NewState()
	c, err := configsync.NewClient(configsync.Options{Source: &nodelink.HTTPSource{BaseURL: srv.URL, NodeID: testNode, Token: "bad"},
		State: state, Dir: dir, Log: quietLog(), AckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop := runClient(t, c)
	waitFor(t, 2*time.Second, "the first watch", func() bool { mu.Lock(); defer mu.Unlock(); return watches > 0 })
	time.Sleep(800 * time.Millisecond) // an ordinary failure would have been retried 2–4 times by now
	mu.Lock()
	w := watches
	mu.Unlock()
	if w != 1 {
		t.Errorf("%d watch requests within 0.8 s of a 401, want 1 (back off ≥10 s)", w)
	}
	if c.Connected() {
		t.Error("Connected() after a 401")
	}
	began := time.Now()
	stop()
	if el := time.Since(began); el > 2*time.Second {
		t.Errorf("Run took %s to stop while backing off", el)
	}
	if c.Revision() != 1234 || state.Credentials() != 12 {
		t.Errorf("state changed: rev %d, %d credentials", c.Revision(), state.Credentials())
	}
	diffSnapshots(t, state.Snapshot(), prev.Snapshot())
	// The snapshot on disk still holds what the node knew.
	disk := configsync.NewState()
	if err := disk.LoadFile(filepath.Join(dir, configsync.SnapshotFile)); err != nil {
		t.Fatal(err)
	}
	diffSnapshots(t, disk.Snapshot(), prev.Snapshot())
}

func TestHTTPSourceErrors(t *testing.T) {
	for _, tc := range []struct {
		status   int
		body     string
		rejected bool
		want     string
	}{
		{http.StatusUnauthorized, `{"title":"Unauthorized","detail":"node token revoked"}`, true, "node token revoked"},
		{http.StatusForbidden, `{"title":"Forbidden"}`, true, "Forbidden"},
		{http.StatusNotFound, "no such node\n", true, "no such node"},
		{http.StatusInternalServerError, `{"title":"Internal","detail":"database down"}`, false, "database down"},
		{http.StatusServiceUnavailable, "try later", false, "try later"},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			h := &nodelink.HTTPSource{BaseURL: srv.URL, NodeID: testNode, Token: testToken, Client: srv.Client()}
			called := false
			werr := h.Watch(context.Background(), 0, func(nodelink.Event) error { called = true; return nil })
			aerr := h.Ack(context.Background(), nodelink.Ack{Revision: 1})
			for name, err := range map[string]error{"Watch": werr, "Ack": aerr} {
				if err == nil {
					t.Fatalf("%s: no error for %d", name, tc.status)
				}
				if errors.Is(err, nodelink.ErrNodeRejected) != tc.rejected {
					t.Errorf("%s: %v; errors.Is(ErrNodeRejected) = %v, want %v", name, err, !tc.rejected, tc.rejected)
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), strconv.Itoa(tc.status)) {
					t.Errorf("%s: %q does not say %q and %d", name, err, tc.want, tc.status)
				}
			}
			if called {
				t.Error("Watch called fn on an error answer")
			}
		})
	}
}

// The stream's events reach fn in order; an error from fn ends Watch with
// that error; an unparsable line is an error, not a silent stop.
func TestHTTPSourceWatch(t *testing.T) {
	f := newFakeCP(t, func(n int, since int64, send func(nodelink.Event), r *http.Request) {
		history(since, 20, send)
	})
	h := f.source()
	var got []string
	err := h.Watch(context.Background(), 12, func(ev nodelink.Event) error {
		got = append(got, fmt.Sprintf("%d:%s", ev.Revision, ev.Kind))
		if ev.Kind == nodelink.KindCredentialPut && (ev.Credential == nil || len(ev.Credential.SecretSHA256) != 32) {
			t.Errorf("credential not decoded: %+v", ev.Credential)
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Watch of a stream the server closed: %v", err)
	}
	if strings.Join(got, ",") != "13:acl.put,17:credential.put,20:credential.put" {
		t.Errorf("events %v", got)
	}
	stopErr := errors.New("enough")
	got = nil
	err = h.Watch(context.Background(), 0, func(ev nodelink.Event) error {
		got = append(got, ev.Kind)
		return stopErr
	})
	if !errors.Is(err, stopErr) || len(got) != 1 || got[0] != nodelink.KindSnapshot {
		t.Errorf("Watch with fn failing: %v after %v", err, got)
	}
	if s := f.watchSinces(); len(s) != 2 || s[0] != 12 || s[1] != 0 {
		t.Errorf("since sent: %v", s)
	}
	f.checkNoBadRequests()

	garbled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"rev":21,"kind":"heartbeat"}`+"\n"+`{"rev":22,"kind":`+"\n")
	}))
	defer garbled.Close()
	got = nil
	err = (&nodelink.HTTPSource{BaseURL: garbled.URL, NodeID: testNode}).Watch(context.Background(), 20, func(ev nodelink.Event) error {
		got = append(got, fmt.Sprintf("%d:%s", ev.Revision, ev.Kind))
		return nil
	})
	if err == nil || strings.Contains(err.Error(), "closed by the control plane") || strings.Join(got, ",") != "21:heartbeat" {
		t.Errorf("Watch of a torn line: %v after %v", err, got)
	}

	// Cancelling the context ends an open stream with the context's error.
	open := newFakeCP(t, func(n int, since int64, send func(nodelink.Event), r *http.Request) {
		send(nodelink.Event{Revision: 30, Kind: nodelink.KindHeartbeat})
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	err = open.source().Watch(ctx, 30, func(nodelink.Event) error { cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Watch after cancel: %v", err)
	}
}

// Acks are small periodic requests: they reuse one connection.
func TestHTTPSourceReusesConnections(t *testing.T) {
	f := newFakeCP(t, func(int, int64, func(nodelink.Event), *http.Request) {})
	h := f.source() // default HTTP client
	for i := range 5 {
		if err := h.Ack(context.Background(), nodelink.Ack{Revision: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	conns := f.conns
	f.mu.Unlock()
	if conns != 1 {
		t.Errorf("5 acks opened %d connections, want 1", conns)
	}
	if f.maxAck() != 4 {
		t.Errorf("acks received up to %d", f.maxAck())
	}
}

// fixedSource streams first, then (once gate is closed) later, then holds
// the stream open.
type fixedSource struct {
	first, later []nodelink.Event
	gate         chan struct{}
	mu           sync.Mutex
	sinces       []int64
}

func (s *fixedSource) Watch(ctx context.Context, since int64, fn func(nodelink.Event) error) error {
	s.mu.Lock()
	s.sinces = append(s.sinces, since)
	s.mu.Unlock()
	send := func(evs []nodelink.Event) error {
		for _, ev := range evs {
			if ev.Revision > since || ev.Kind == nodelink.KindSnapshot && since == 0 {
				if err := fn(ev); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := send(s.first); err != nil {
		return err
	}
	select {
	case <-s.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := send(s.later); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *fixedSource) Ack(context.Context, nodelink.Ack) error                 { return nil }
func (s *fixedSource) ReportUsage(context.Context, nodelink.UsageReport) error { return nil }
func (s *fixedSource) RuleSecret(context.Context, string) ([]byte, error) {
	return nil, errors.New("no rule secrets here")
}

// unreachable never connects.
type unreachable struct {
	mu      sync.Mutex
	watches int
}

func (u *unreachable) Watch(ctx context.Context, since int64, fn func(nodelink.Event) error) error {
	u.mu.Lock()
	u.watches++
	u.mu.Unlock()
	return errors.New("dial tcp: connection refused")
}

func (u *unreachable) Ack(context.Context, nodelink.Ack) error {
	return errors.New("dial tcp: connection refused")
}

func (u *unreachable) RuleSecret(context.Context, string) ([]byte, error) {
	return nil, errors.New("unreachable")
}

func (u *unreachable) ReportUsage(context.Context, nodelink.UsageReport) error {
	return errors.New("dial tcp: connection refused")
}

// A node that followed the control plane starts with it down: the client
// loads the snapshot the first one saved and the state authenticates.
func TestClientSnapshotSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, configsync.SnapshotFile)
	src := &fixedSource{first: []nodelink.Event{snapshot10}, later: deltas, gate: make(chan struct{})}
	first := configsync.NewState()
	c1, err := configsync.NewClient(configsync.Options{Source: src, State: first, Dir: dir, Log: quietLog(),
		SaveDelay: 20 * time.Millisecond, AckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop1 := runClient(t, c1)
	// The saver writes a snapshot at once, and deltas within SaveDelay,
	// while Run still runs.
	probe := configsync.NewState()
	onDisk := func(rev int64) func() bool {
		return func() bool { return probe.LoadFile(path) == nil && probe.Revision() == rev }
	}
	waitFor(t, 2*time.Second, "the snapshot (revision 10) on disk", onDisk(10))
	close(src.gate)
	waitFor(t, 2*time.Second, "revision 20", func() bool { return c1.Revision() == 20 })
	waitFor(t, 2*time.Second, "revision 20 on disk", onDisk(20))
	stop1()

	second := configsync.NewState()
	down := &unreachable{}
	c2, err := configsync.NewClient(configsync.Options{Source: down, State: second, Dir: dir, Log: quietLog(), AckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c2.Revision() != 20 || second.Credentials() != 3 {
		t.Fatalf("loaded revision %d with %d credentials, want 20 and 3", c2.Revision(), second.Credentials())
	}
	if id, res := second.CheckPassword("i-1", "dev-4", []byte("pw-4"), "any", time.Now()); res != configsync.AuthOK || id != "c-4" {
		t.Fatalf("dev-4 (added by a delta) from the disk snapshot: %q %d", id, res)
	}
	if auth(second, "dev-1", "pw-1-rotated") != configsync.AuthOK || auth(second, "dev-1", "pw-1") != configsync.AuthBadCredentials ||
		auth(second, "dev-2", "pw-2") != configsync.AuthBadCredentials {
		t.Fatal("the disk snapshot does not reflect the deltas")
	}
	diffSnapshots(t, second.Snapshot(), first.Snapshot())

	// Run with the control plane down: retries, serves, keeps the file.
	stop2 := runClient(t, c2)
	waitFor(t, 2*time.Second, "a retry", func() bool { down.mu.Lock(); defer down.mu.Unlock(); return down.watches >= 2 })
	if c2.Connected() {
		t.Error("Connected() with the control plane down")
	}
	if auth(second, "dev-3", "pw-3") != configsync.AuthOK {
		t.Error("dev-3 refused while the control plane is down")
	}
	stop2()
	again := configsync.NewState()
	if err := again.LoadFile(path); err != nil || again.Revision() != 20 {
		t.Fatalf("snapshot after an offline run: %v, revision %d", err, again.Revision())
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.sinces) != 1 || src.sinces[0] != 0 {
		t.Errorf("first client watched with since=%v", src.sinces)
	}
}

func TestClientLoad(t *testing.T) {
	dir := t.TempDir()
	s := configsync.NewState()
	c, err := configsync.NewClient(configsync.Options{Source: &unreachable{}, State: s, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Load(context.Background()); err != nil || s.Revision() != 0 {
		t.Fatalf("Load without a file: %v (rev %d)", err, s.Revision())
	}
	if err := os.WriteFile(filepath.Join(dir, configsync.SnapshotFile), []byte("AERIECFG\x01garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Load(context.Background()); !errors.Is(err, configsync.ErrCorruptSnapshot) {
		t.Fatalf("Load of a damaged file: %v, want ErrCorruptSnapshot", err)
	}
	if s.Revision() != 0 || s.Credentials() != 0 {
		t.Fatal("a damaged file changed the state")
	}

	for name, o := range map[string]configsync.Options{
		"no source": {State: s, Dir: dir},
		"no state":  {Source: &unreachable{}, Dir: dir},
		"no dir":    {Source: &unreachable{}, State: s},
	} {
		if c, err := configsync.NewClient(o); err == nil || c != nil {
			t.Errorf("NewClient with %s: %v, %v", name, c, err)
		}
	}
}
