package forward

import (
	"github.com/aeriemq/aerie/nodelink"

	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/aeriemq/aerie/dataplane/config"
	"github.com/aeriemq/aerie/dataplane/configsync"
	"github.com/aeriemq/aerie/dataplane/store"
)

// secrets are the rules' signing secrets as the control plane would hand
// them out.
var secrets sync.Map

// got is one event a receiver accepted.
type got struct {
	id, subject string
	data        []byte
}

// receiver is a real HTTPS server that validates every request as a
// CloudEvent (with the CloudEvents Go SDK) and its signature, and answers
// with status(n) for the n-th request (0: 200).
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	n      int
	status func(n int) int
	events []got
	bad    []string
}

func newReceiver(t testing.TB, secret string) *receiver {
	rc := &receiver{t: t, secret: []byte(secret)}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.n++
	n, status := rc.n, rc.status
	rc.mu.Unlock()
	if status != nil {
		if c := status(n); c != 0 {
			w.WriteHeader(c)
			return
		}
	}
	bad := func(why string) {
		rc.mu.Lock()
		rc.bad = append(rc.bad, why)
		rc.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
	}
	if len(rc.secret) > 0 && !hmac.Equal([]byte(r.Header.Get(SignatureHeader)), []byte(Sign(rc.secret, body))) {
		bad("bad signature")
		return
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	ev, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
	if err != nil {
		bad("not a cloudevent: " + err.Error())
		return
	}
	if err := ev.Validate(); err != nil {
		bad("invalid cloudevent: " + err.Error())
		return
	}
	if ev.SpecVersion() != "1.0" || ev.Type() != EventType || !strings.HasPrefix(ev.Source(), "urn:aerie:instance:") || ev.Time().IsZero() {
		bad(fmt.Sprintf("attributes: %s %s %s %v", ev.SpecVersion(), ev.Type(), ev.Source(), ev.Time()))
		return
	}
	rc.mu.Lock()
	rc.events = append(rc.events, got{id: ev.ID(), subject: ev.Subject(), data: ev.Data()})
	rc.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (rc *receiver) snapshot() ([]got, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]got(nil), rc.events...), append([]string(nil), rc.bad...)
}

func (rc *receiver) setStatus(f func(n int) int) {
	rc.mu.Lock()
	rc.status = f
	rc.mu.Unlock()
}

// node is a store, a config state and a forwarding service.
type node struct {
	st    *store.Store
	state *configsync.State
	svc   *Service
	stop  context.CancelFunc
	done  chan struct{}
	rev   int64
}

func rule(t testing.TB, rc *receiver, id, secret string) config.Rule {
	secrets.Store(id, []byte(secret))
	return config.Rule{ID: id, Name: id, Filter: "fleet/+/telemetry", MaxAgeSeconds: 3600,
		Sink: config.Sink{Type: config.SinkWebhook, URL: rc.srv.URL, Signed: true, Headers: map[string]string{"X-Team": "ops"}}}
}

func startNode(t testing.TB, dir string, rc *receiver, rules ...config.Rule) *node {
	t.Helper()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{st: st, state: configsync.NewState(), rev: 1}
	if err := n.state.Apply(config.Event{Revision: 1, Kind: config.KindSnapshot, Snapshot: &config.Snapshot{Revision: 1,
		Instances: []config.Instance{{ID: "i1", Status: config.StatusRunning, Rules: rules}}}}); err != nil {
		t.Fatal(err)
	}
	// The gateway registers rule filters as queues; here, by hand.
	if err := st.SetTopics(context.Background(), "i1", []store.TopicQueue{{Filter: "i1/fleet/+/telemetry"}}); err != nil {
		t.Fatal(err)
	}
	pool := rc.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	n.svc = New(Options{Store: st, State: n.state, Secret: func(_ context.Context, _, rule string) ([]byte, error) {
		v, ok := secrets.Load(rule)
		if !ok {
			return nil, fmt.Errorf("no secret for %s", rule)
		}
		return v.([]byte), nil
	}, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Sinks: SinkOptions{Transport: TransportOptions{RootCAs: pool, AllowPrivate: true}}})
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan struct{})
	go func() { defer close(n.done); n.svc.Run(ctx) }()
	waitFor(t, 5*time.Second, "rules started", func() bool {
		for _, r := range rules {
			if n.svc.runner("i1", r.ID) == nil || n.svc.runner("i1", r.ID).cursor.Load() == 0 && lastOffset(n.st) > 0 {
				return false
			}
		}
		return true
	})
	return n
}

func (n *node) close(t testing.TB) {
	n.stop()
	<-n.done
	if err := n.st.Close(); err != nil {
		t.Fatal(err)
	}
}

func (n *node) putRule(t testing.TB, r config.Rule) {
	n.rev++
	if err := n.state.Apply(config.Event{Revision: n.rev, Kind: config.KindRulePut, InstanceID: "i1", Rule: &r}); err != nil {
		t.Fatal(err)
	}
}

// publish stores count messages round-robin over topics topics; payload
// "<topic index>:<seq in topic>".
func (n *node) publish(t testing.TB, topics, count, from int) {
	t.Helper()
	var batch []store.Message
	for i := from; i < from+count; i++ {
		k := i % topics
		batch = append(batch, store.Message{Instance: "i1", Topic: fmt.Sprintf("i1/fleet/d%d/telemetry", k), QoS: 1,
			Payload: []byte(fmt.Sprintf(`{"d":%d,"seq":%d}`, k, i/topics))})
		if len(batch) == 100 || i == from+count-1 {
			if _, err := n.st.Append(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkAll asserts that every one of count messages over topics topics
// arrived at least once, and in order per topic (first arrivals).
func checkAll(t testing.TB, evs []got, topics, count int) {
	t.Helper()
	type p struct{ D, Seq int }
	next := map[int]int{}
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.id] {
			continue
		}
		seen[e.id] = true
		var v p
		if err := json.Unmarshal(e.data, &v); err != nil {
			t.Fatalf("data %q: %v", e.data, err)
		}
		if e.subject != fmt.Sprintf("fleet/d%d/telemetry", v.D) {
			t.Fatalf("subject %q for d%d", e.subject, v.D)
		}
		if v.Seq != next[v.D] {
			t.Fatalf("topic d%d: got seq %d, want %d (out of order)", v.D, v.Seq, next[v.D])
		}
		next[v.D]++
	}
	if len(seen) != count {
		t.Fatalf("%d distinct messages arrived, want %d", len(seen), count)
	}
}

func arrived(rc *receiver, count int) func() bool {
	return func() bool {
		evs, _ := rc.snapshot()
		ids := map[string]bool{}
		for _, e := range evs {
			ids[e.id] = true
		}
		return len(ids) >= count
	}
}

// TestWebhookDeliversCloudEvents: N device messages reach an HTTPS
// receiver as valid CloudEvents 1.0 (checked by the CloudEvents Go SDK), in
// structured and binary mode, each with a valid HMAC-SHA256 signature, the
// rule's custom header, id <instance>/<offset> and the topic as subject.
func TestWebhookDeliversCloudEvents(t *testing.T) {
	const n, topics = 400, 8
	structured := newReceiver(t, "whsec_structured")
	binary := newReceiver(t, "whsec_binary")
	var header sync.Map
	binary.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header.Store(r.Header.Get("X-Team")+"|"+r.Header.Get("Content-Type"), true)
		binary.serve(w, r)
	})
	rb := rule(t, binary, "rb", "whsec_binary")
	rb.Sink.Mode = config.ModeBinary
	nd := startNode(t, t.TempDir(), structured, rule(t, structured, "rs", "whsec_structured"), rb)
	defer nd.close(t)
	nd.publish(t, topics, n, 0)
	waitFor(t, 20*time.Second, "structured deliveries", arrived(structured, n))
	waitFor(t, 20*time.Second, "binary deliveries", arrived(binary, n))
	for _, rc := range []*receiver{structured, binary} {
		evs, bad := rc.snapshot()
		if len(bad) > 0 {
			t.Fatalf("receiver refused %d requests, first: %s", len(bad), bad[0])
		}
		checkAll(t, evs, topics, n)
		if !strings.HasPrefix(evs[0].id, "i1/") {
			t.Fatalf("id %q", evs[0].id)
		}
	}
	if _, ok := header.Load("ops|application/json"); !ok {
		t.Fatal("binary mode: custom header or payload content type missing")
	}
	st := nd.svc.status(context.Background(), "i1", "rs")
	if st.Delivered != n || st.State != nodelink.RuleStateActive || st.LagMessages != 0 {
		t.Fatalf("status %+v", st)
	}
	u := nd.svc.DrainUsage()
	if len(u) != 1 || u[0].MessagesForwarded != 2*n || u[0].MessageUnitsOut != 2*n {
		t.Fatalf("usage %+v", u)
	}
}

// TestFlakyAndDownSinks: one receiver fails half its requests at random,
// another is down for a while and then returns: every message arrives at
// least once and in order per topic at both; retries are counted.
func TestFlakyAndDownSinks(t *testing.T) {
	const n, topics = 300, 5
	flaky := newReceiver(t, "s1")
	flaky.setStatus(func(int) int {
		if rand.IntN(2) == 0 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	down := newReceiver(t, "s2")
	down.setStatus(func(int) int { return http.StatusBadGateway })
	nd := startNode(t, t.TempDir(), flaky, rule(t, flaky, "flaky", "s1"), rule(t, down, "down", "s2"))
	defer nd.close(t)
	nd.publish(t, topics, n, 0)
	waitFor(t, 5*time.Second, "the down sink to be retried", func() bool { return nd.svc.status(context.Background(), "i1", "down").Retries >= 5 })
	if st := nd.svc.status(context.Background(), "i1", "down"); st.State != nodelink.RuleStateFailing || st.LagMessages != n || st.LagSeconds <= 0 || st.LastError == "" {
		t.Fatalf("down sink status %+v", st)
	}
	down.setStatus(nil) // back
	waitFor(t, 30*time.Second, "flaky deliveries", arrived(flaky, n))
	waitFor(t, 30*time.Second, "deliveries after the outage", arrived(down, n))
	for _, rc := range []*receiver{flaky, down} {
		evs, bad := rc.snapshot()
		if len(bad) > 0 {
			t.Fatalf("bad requests: %v", bad[0])
		}
		checkAll(t, evs, topics, n)
	}
	if st := nd.svc.status(context.Background(), "i1", "flaky"); st.Retries == 0 || st.Failed == 0 || st.DeadLettered != 0 {
		t.Fatalf("flaky status %+v", st)
	}
}

// TestRestartMidStream: the node stops while a rule is delivering and
// starts again on the same store: nothing is lost (the rule resumes after
// its committed cursor), order per topic holds.
func TestRestartMidStream(t *testing.T) {
	const n, topics = 600, 6
	dir := t.TempDir()
	rc := newReceiver(t, "s")
	var slow sync.Mutex // slow receiver: the stop lands mid-stream
	rc.setStatus(func(int) int { slow.Lock(); time.Sleep(3 * time.Millisecond); slow.Unlock(); return 0 })
	r := rule(t, rc, "r1", "s")
	nd := startNode(t, dir, rc, r)
	nd.publish(t, topics, n, 0)
	waitFor(t, 20*time.Second, "some deliveries", arrived(rc, n/4))
	before, _ := rc.snapshot()
	nd.close(t)
	t.Logf("%d delivered when the node stopped", len(before))
	if evs, _ := rc.snapshot(); len(evs) >= n {
		t.Fatalf("all %d delivered before the restart: the test proves nothing", len(evs))
	}
	nd = startNode(t, dir, rc, r)
	defer nd.close(t)
	waitFor(t, 30*time.Second, "deliveries after the restart", arrived(rc, n))
	evs, _ := rc.snapshot()
	checkAll(t, evs, topics, n)
}

// TestDeadLettersAndReplay: with the receiver failing, messages past the
// rule's maximum age go to its dead-letter list (a 4xx refusal at once); a
// replay delivers them once the receiver is back; purge empties the list.
func TestDeadLettersAndReplay(t *testing.T) {
	rc := newReceiver(t, "s")
	rc.setStatus(func(int) int { return http.StatusInternalServerError })
	r := rule(t, rc, "r1", "s")
	r.MaxAgeSeconds = 1
	refused := newReceiver(t, "s")
	refused.setStatus(func(int) int { return http.StatusForbidden })
	r2 := rule(t, refused, "r2", "s")
	nd := startNode(t, t.TempDir(), rc, r, r2)
	defer nd.close(t)
	const n = 20
	t0 := time.Now() // before the messages are stamped: their age counts from then
	nd.publish(t, 2, n, 0)
	waitFor(t, 10*time.Second, "dead letters", func() bool { return nd.svc.status(context.Background(), "i1", "r1").DeadLetters == n })
	if el := time.Since(t0); el < 900*time.Millisecond {
		t.Fatalf("dead-lettered after %v, before the maximum age", el)
	}
	waitFor(t, 5*time.Second, "refused dead letters", func() bool { return nd.svc.status(context.Background(), "i1", "r2").DeadLetters == n })
	if st := nd.svc.status(context.Background(), "i1", "r2"); st.Retries != 0 {
		t.Fatalf("a 403 was retried: %+v", st)
	}
	page, err := nd.svc.DeadLetters(context.Background(), "i1", "r1", 0, 15)
	if err != nil || len(page.Items) != 15 || page.Next == 0 || page.Items[0].Topic != "fleet/d0/telemetry" || page.Items[0].Attempts < 1 ||
		!strings.Contains(page.Items[0].Reason, "500") {
		t.Fatalf("dead letters: %+v %v", page, err)
	}
	rest, _ := nd.svc.DeadLetters(context.Background(), "i1", "r1", page.Next, 15)
	if len(rest.Items) != n-15 || rest.Next != 0 {
		t.Fatalf("second page: %d items, next %d", len(rest.Items), rest.Next)
	}
	rc.setStatus(nil)
	if res, err := nd.svc.Replay(context.Background(), "i1", "r1"); err != nil || res.Count != n {
		t.Fatalf("replay: %+v %v", res, err)
	}
	waitFor(t, 10*time.Second, "replayed deliveries", arrived(rc, n))
	evs, _ := rc.snapshot()
	checkAll(t, evs, 2, n)
	waitFor(t, 5*time.Second, "an empty list", func() bool { return nd.svc.status(context.Background(), "i1", "r1").DeadLetters == 0 })
	if res, err := nd.svc.Purge(context.Background(), "i1", "r2"); err != nil || res.Count != n {
		t.Fatalf("purge: %+v %v", res, err)
	}
	if p, _ := nd.svc.DeadLetters(context.Background(), "i1", "r2", 0, 100); len(p.Items) != 0 {
		t.Fatalf("%d dead letters after purge", len(p.Items))
	}
	if _, err := nd.svc.Replay(context.Background(), "i1", "nope"); err == nil {
		t.Fatal("replay of an unknown rule answered")
	}
}

// TestPauseResume: a paused rule delivers nothing; resumed, it delivers
// what was published meanwhile.
func TestPauseResume(t *testing.T) {
	rc := newReceiver(t, "s")
	r := rule(t, rc, "r1", "s")
	nd := startNode(t, t.TempDir(), rc, r)
	defer nd.close(t)
	nd.publish(t, 1, 5, 0)
	waitFor(t, 5*time.Second, "deliveries", arrived(rc, 5))
	r.Paused = true
	nd.putRule(t, r)
	waitFor(t, 5*time.Second, "paused", func() bool { return nd.svc.status(context.Background(), "i1", "r1").State == nodelink.RuleStatePaused })
	nd.publish(t, 1, 10, 5)
	time.Sleep(500 * time.Millisecond)
	if evs, _ := rc.snapshot(); len(evs) != 5 {
		t.Fatalf("a paused rule delivered: %d events", len(evs))
	}
	if st := nd.svc.status(context.Background(), "i1", "r1"); st.LagMessages != 10 {
		t.Fatalf("paused lag %+v", st)
	}
	r.Paused = false
	nd.putRule(t, r)
	waitFor(t, 5*time.Second, "deliveries after resume", arrived(rc, 15))
	evs, _ := rc.snapshot()
	checkAll(t, evs, 1, 15)
}

func lastOffset(st *store.Store) uint64 {
	off, _ := st.LastOffset(context.Background(), "i1")
	return off
}
