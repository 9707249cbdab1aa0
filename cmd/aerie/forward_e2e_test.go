package main_test

import (
	"context"
	"crypto/hmac"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/dataplane/forward"
	"github.com/aeriemq/aerie/internal/pgtest"
)

// hook is a real HTTPS webhook receiver: every request must be a valid
// CloudEvent 1.0 (CloudEvents Go SDK) with a valid X-Aerie-Signature.
type hook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	secret []byte
	status int           // answer instead of accepting (0: accept)
	delay  time.Duration // before answering
	seen   []hookEvent
	bad    []string
}

type hookEvent struct {
	ID, Subject, Source, Type string
	Data                      []byte
	At                        time.Time
}

func newHook(t *testing.T) *hook {
	h := &hook{}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) set(f func(h *hook)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	status, delay, secret := h.status, h.delay, h.secret
	h.mu.Unlock()
	time.Sleep(delay)
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	fail := func(why string) {
		h.mu.Lock()
		h.bad = append(h.bad, why)
		h.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
	}
	if !hmac.Equal([]byte(r.Header.Get(forward.SignatureHeader)), []byte(forward.Sign(secret, body))) {
		fail("bad signature")
		return
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	ev, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
	if err == nil {
		err = ev.Validate()
	}
	if err != nil {
		fail("not a valid cloudevent: " + err.Error())
		return
	}
	h.mu.Lock()
	h.seen = append(h.seen, hookEvent{ID: ev.ID(), Subject: ev.Subject(), Source: ev.Source(), Type: ev.Type(), Data: ev.Data(), At: time.Now()})
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hook) events() ([]hookEvent, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookEvent(nil), h.seen...), append([]string(nil), h.bad...)
}

// distinct counts the distinct event ids received.
func (h *hook) distinct() int {
	evs, _ := h.events()
	ids := map[string]bool{}
	for _, e := range evs {
		ids[e.ID] = true
	}
	return len(ids)
}

// caFile writes the receivers' certificate where aerie trusts it.
func caFile(t *testing.T, hs ...*hook) string { return caFileB(t, hs...) }

func caFileB(t testing.TB, hs ...*hook) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	var b []byte
	for _, h := range hs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.Certificate().Raw})...)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// inOrder checks that the payloads "<device>:<seq>" of each subject came
// in order (first arrivals), and returns how many distinct messages came.
func inOrder(t *testing.T, evs []hookEvent) int {
	t.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		_, seq, _ := strings.Cut(string(e.Data), ":")
		n, err := strconv.Atoi(seq)
		if err != nil {
			t.Fatalf("payload %q", e.Data)
		}
		if n != next[e.Subject] {
			t.Fatalf("%s: got #%d, want #%d (out of order)", e.Subject, n, next[e.Subject])
		}
		next[e.Subject]++
	}
	return len(seen)
}

type ruleOut struct {
	ID, Secret   string
	SecretPrefix string `json:"secret_prefix"`
	Paused       bool
}

type ruleStatusOut struct {
	State        string
	Delivered    int64
	Retries      int64
	DeadLetters  int64   `json:"dead_letters"`
	LagMessages  int     `json:"lag_messages"`
	LagSeconds   float64 `json:"lag_seconds"`
	LastError    string  `json:"last_error"`
	DeadLettered int64   `json:"dead_lettered"`
}

func waitStatus(t *testing.T, c api, path string, what string, ok func(ruleStatusOut) bool) ruleStatusOut {
	t.Helper()
	var st ruleStatusOut
	if !within(20*time.Second, func() bool {
		c.call(t, "GET", path+"/status", nil, 200, &st)
		return ok(st)
	}) {
		t.Fatalf("%s: status %+v", what, st)
	}
	return st
}

func unlimitedEnterprise(t *testing.T, dsn string) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `UPDATE plans SET quotas = quotas || '{"max_publish_per_second":0,"max_publish_per_second_per_client":0,"max_bytes_per_second":0}'::jsonb WHERE id = 'enterprise'`); err != nil {
		t.Fatal(err)
	}
}

// publishSeq publishes n QoS 1 messages "<device>:<seq>" round-robin over
// devices devices on fleet/<device>/telemetry, seq counting per topic from
// from.
func publishSeq(t *testing.T, addr, user, pass string, devices, n, from int) {
	t.Helper()
	dev, err := connect3(addr, "pub-"+strconv.Itoa(from), user, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Disconnect(100)
	var toks []interface {
		WaitTimeout(time.Duration) bool
		Error() error
	}
	for i := range n {
		d := i % devices
		toks = append(toks, dev.Publish(fmt.Sprintf("fleet/d%d/telemetry", d), 1, false, fmt.Sprintf("d%d:%d", d, from+i/devices)))
	}
	for _, tk := range toks {
		if !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
			t.Fatalf("publish: %v", tk.Error())
		}
	}
}

// TestForwardingEndToEnd (issue 17 item 3) against `aerie serve`: a webhook
// rule created over the API delivers device messages to a real HTTPS server
// as valid, signed CloudEvents, in order per topic; its status and /metrics
// count them; pause stops delivery and resume continues it; a rule whose
// receiver fails past the maximum age fills its dead-letter list, and a
// replay delivers them; forwarded messages show in the usage series; the
// plan bounds the number of rules; another org gets 404.
func TestForwardingEndToEnd(t *testing.T) {
	const n, devices = 600, 10
	dsn := pgtest.EmptyDSN(t)
	ok, failing := newHook(t), newHook(t)
	pp := freePorts(t)
	mp := freePorts(t).http
	p := start(t, cleanEnv("DATABASE_URL="+dsn, "AERIE_METRICS_ADDR="+mp, "AERIE_FORWARD_CA_FILE="+caFile(t, ok, failing), "AERIE_FORWARD_ALLOW_PRIVATE=true"),
		append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	unlimitedEnterprise(t, dsn)
	base := "http://" + pp.http
	c, org := signup(t, base, "forward@example.com")
	other, otherOrg := signup(t, base, "forward-other@example.com")
	c.call(t, "PUT", "/v1/orgs/"+org+"/subscription", map[string]any{"plan": "enterprise"}, 200, nil)
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "fleet"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	ip := "/v1/orgs/" + org + "/instances/" + inst.ID
	var cred credOut
	prefer(t, c, "POST", ip+"/credentials", map[string]any{"username": "dev"}, &cred)
	var r ruleOut
	prefer(t, c, "POST", ip+"/rules", map[string]any{"name": "hook", "filter": "fleet/+/telemetry",
		"sink": map[string]any{"type": "webhook", "url": ok.srv.URL + "/in", "headers": map[string]string{"X-Team": "ops"}}}, &r)
	if !strings.HasPrefix(r.Secret, "whsec_") || !strings.HasPrefix(r.Secret, r.SecretPrefix) {
		t.Fatalf("created rule: %+v", r)
	}
	ok.set(func(h *hook) { h.secret = []byte(r.Secret) })
	rp := ip + "/rules/" + r.ID
	var got map[string]any
	c.call(t, "GET", rp, nil, 200, &got)
	if _, leaked := got["secret"]; leaked {
		t.Fatal("GET shows the rule's secret")
	}
	for _, path := range []string{rp, rp + "/status", rp + "/dead-letters"} {
		other.call(t, "GET", strings.Replace(path, org, otherOrg, 1), nil, 404, nil)
	}
	waitStatus(t, c, rp, "rule running", func(s ruleStatusOut) bool { return s.State == "active" })

	publishSeq(t, pp.mqtt, cred.MQTTUsername, cred.Password, devices, n, 0)
	if !within(30*time.Second, func() bool { return ok.distinct() >= n }) {
		t.Fatalf("%d of %d messages forwarded", ok.distinct(), n)
	}
	evs, bad := ok.events()
	if len(bad) > 0 {
		t.Fatalf("receiver refused %d requests: %s", len(bad), bad[0])
	}
	if inOrder(t, evs) != n || evs[0].Source != "urn:aerie:instance:"+inst.ID || evs[0].Type != "io.aerie.message.published" ||
		!strings.HasPrefix(evs[0].ID, inst.ID+"/") {
		t.Fatalf("events: %+v", evs[0])
	}
	st := waitStatus(t, c, rp, "delivered counted", func(s ruleStatusOut) bool { return s.Delivered == n && s.LagMessages == 0 })
	if prom := scrape(t, "http://"+mp+"/metrics", inst.ID); prom["aerie_rule_delivered_total"] != n || prom["aerie_rule_lag_messages"] != 0 {
		t.Fatalf("/metrics: delivered %v lag %v (status %+v)", prom["aerie_rule_delivered_total"], prom["aerie_rule_lag_messages"], st)
	}

	// Pause: nothing goes out, the lag grows; resume: it goes out.
	prefer(t, c, "POST", rp+"/pause", nil, &r)
	waitStatus(t, c, rp, "paused", func(s ruleStatusOut) bool { return s.State == "paused" })
	publishSeq(t, pp.mqtt, cred.MQTTUsername, cred.Password, 1, 5, n/devices)
	waitStatus(t, c, rp, "paused lag", func(s ruleStatusOut) bool { return s.LagMessages == 5 })
	time.Sleep(500 * time.Millisecond)
	if d := ok.distinct(); d != n {
		t.Fatalf("a paused rule forwarded: %d", d)
	}
	prefer(t, c, "POST", rp+"/resume", nil, &r)
	if !within(10*time.Second, func() bool { return ok.distinct() == n+5 }) {
		t.Fatalf("after resume: %d of %d", ok.distinct(), n+5)
	}

	// Dead letters: a failing receiver, one second of maximum age.
	failing.set(func(h *hook) { h.status = http.StatusServiceUnavailable })
	var dr ruleOut
	prefer(t, c, "POST", ip+"/rules", map[string]any{"name": "alerts", "filter": "alerts/#", "max_age_seconds": 1,
		"sink": map[string]any{"type": "webhook", "url": failing.srv.URL, "mode": "binary"}}, &dr)
	failing.set(func(h *hook) { h.secret = []byte(dr.Secret) })
	dp := ip + "/rules/" + dr.ID
	waitStatus(t, c, dp, "dlq rule running", func(s ruleStatusOut) bool { return s.State == "active" })
	dev, err := connect3(pp.mqtt, "alerter", cred.MQTTUsername, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if tk := dev.Publish("alerts/a", 1, false, "a:"+strconv.Itoa(i)); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	dev.Disconnect(100)
	waitStatus(t, c, dp, "dead letters", func(s ruleStatusOut) bool { return s.DeadLetters == 3 && s.LastError != "" })
	var dl struct {
		Data []struct {
			Topic    string
			Payload  []byte
			Attempts int
			Reason   string
		}
		NextCursor *string `json:"next_cursor"`
	}
	c.call(t, "GET", dp+"/dead-letters?limit=2", nil, 200, &dl)
	if len(dl.Data) != 2 || dl.NextCursor == nil || dl.Data[0].Topic != "alerts/a" || string(dl.Data[0].Payload) != "a:0" || !strings.Contains(dl.Data[0].Reason, "503") {
		t.Fatalf("dead letters: %+v", dl)
	}
	c.call(t, "GET", dp+"/dead-letters?limit=2&cursor="+*dl.NextCursor, nil, 200, &dl)
	if len(dl.Data) != 1 || dl.NextCursor != nil {
		t.Fatalf("second page: %+v", dl)
	}
	failing.set(func(h *hook) { h.status = 0 })
	var cnt struct{ Count int }
	c.call(t, "POST", dp+"/dead-letters/replay", nil, 202, &cnt)
	if cnt.Count != 3 {
		t.Fatalf("replay queued %d", cnt.Count)
	}
	if !within(10*time.Second, func() bool { return failing.distinct() == 3 }) {
		t.Fatalf("replayed %d of 3", failing.distinct())
	}
	waitStatus(t, c, dp, "dead letters replayed", func(s ruleStatusOut) bool { return s.DeadLetters == 0 })
	c.call(t, "DELETE", dp+"/dead-letters", nil, 200, &cnt)

	// Forwarded messages are usage (reports every 10 s).
	if !within(30*time.Second, func() bool {
		var m struct {
			Points []struct {
				MessagesForwarded int64 `json:"messages_forwarded"`
			}
		}
		now := time.Now().UTC()
		c.call(t, "GET", ip+"/metrics?step=10s&from="+now.Add(-5*time.Minute).Format(time.RFC3339)+"&to="+now.Add(time.Minute).Format(time.RFC3339), nil, 200, &m)
		var sum int64
		for _, pt := range m.Points {
			sum += pt.MessagesForwarded
		}
		return sum == n+5+3
	}) {
		t.Fatal("forwarded messages not in the usage series")
	}

	// The free plan (unverified owner) holds 2 rules per instance.
	var oi instanceOut
	other.call(t, "POST", "/v1/orgs/"+otherOrg+"/instances", map[string]any{"name": "o"}, 201, &oi)
	for i := range 3 {
		want := 201
		if i == 2 {
			want = 409
		}
		other.call(t, "POST", "/v1/orgs/"+otherOrg+"/instances/"+oi.ID+"/rules", map[string]any{"name": "r" + strconv.Itoa(i), "filter": "#",
			"sink": map[string]any{"type": "webhook", "url": "https://example.com/h"}}, want, nil)
	}
	var audit struct{ Data []struct{ Action string } }
	c.call(t, "GET", "/v1/orgs/"+org+"/audit-events?limit=200", nil, 200, &audit)
	actions := map[string]bool{}
	for _, e := range audit.Data {
		actions[e.Action] = true
	}
	for _, a := range []string{"rule.create", "rule.pause", "rule.resume", "rule.replay", "rule.purge"} {
		if !actions[a] {
			t.Fatalf("audit log lacks %s: %v", a, actions)
		}
	}
	prefer(t, c, "DELETE", dp, nil, nil)
	c.call(t, "GET", dp, nil, 404, nil)
}

// prefer is api.callPrefer (waiting for the node to apply the change) that
// wants a 2xx answer.
func prefer(t *testing.T, c api, method, path string, body, out any) {
	t.Helper()
	if code, _ := c.callPrefer(t, 10, method, path, body, out); code/100 != 2 {
		t.Fatalf("%s %s: status %d", method, path, code)
	}
}
