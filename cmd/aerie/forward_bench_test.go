package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/mqttload"
	"github.com/aeriemq/aerie/internal/pgtest"
)

// benchSink is a local HTTPS webhook receiver that records, per message,
// the time from its publish (a timestamp in the payload) to its arrival.
type benchSink struct {
	srv   *httptest.Server
	mu    sync.Mutex
	ids   map[string]bool
	lat   []time.Duration
	last  time.Time
	total int
}

func newBenchSink(b *testing.B) *benchSink {
	s := &benchSink{ids: map[string]bool{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		now := time.Now()
		var ev struct {
			ID   string `json:"id"`
			Data struct {
				TS int64 `json:"ts"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		if !s.ids[ev.ID] {
			s.ids[ev.ID] = true
			s.lat = append(s.lat, now.Sub(time.Unix(0, ev.Data.TS)))
			s.last = now
		}
		s.total++
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	b.Cleanup(s.srv.Close)
	return s
}

func (s *benchSink) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids, s.lat, s.total = map[string]bool{}, nil, 0
}

func (s *benchSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

func (s *benchSink) p99() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := append([]time.Duration(nil), s.lat...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	if len(l) == 0 {
		return 0
	}
	return l[len(l)*99/100]
}

// publishTimed publishes n QoS 1 messages {"ts":<unix ns>} from pubs
// clients on fwd/<client>/t, at most rate per second in all (0: as fast
// as PUBACKs allow, 64 in flight per client), and returns when every one
// is acknowledged.
func publishTimed(b *testing.B, addr, user, pass string, pubs, n int, rate float64) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for k := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := connect3(addr, fmt.Sprintf("bench-pub-%d-%d", k, time.Now().UnixNano()), user, pass)
			if err != nil {
				errs <- err
				return
			}
			defer c.Disconnect(100)
			var inflight []mqtt3.Token
			every := time.Duration(0)
			if rate > 0 {
				every = time.Duration(float64(time.Second) * float64(pubs) / rate)
			}
			next := time.Now()
			for i := range n / pubs {
				if every > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(every)
				}
				inflight = append(inflight, c.Publish("fwd/"+strconv.Itoa(k)+"/t", 1, false, fmt.Sprintf(`{"ts":%d,"i":%d}`, time.Now().UnixNano(), i)))
				if len(inflight) >= 64 {
					if !inflight[0].WaitTimeout(30*time.Second) || inflight[0].Error() != nil {
						errs <- fmt.Errorf("publish: %v", inflight[0].Error())
						return
					}
					inflight = inflight[1:]
				}
			}
			for _, tk := range inflight {
				if !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
					errs <- fmt.Errorf("publish: %v", tk.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkForwarding (issue 17) on one `aerie serve` with the rate quotas
// lifted, in the same run:
//   - qos1-msg/s: the instance's MQTT QoS 1 rate (10 publishers → 1
//     subscriber, 100-byte payloads, mqttload.Flow), the reference;
//   - fwd-msg/s: a webhook rule forwarding N device messages (10
//     publishers at full speed, 10 topics) to a local HTTPS receiver, from
//     the first publish to the last arrival; fwd/qos1 the ratio;
//   - p99-ms: device → webhook latency (publish to arrival) at a paced
//     1,000 msg/s;
//   - group-msg/s: a consumer group reading the same N messages over HTTP
//     (batches of 1,000, acknowledged), group/qos1 the ratio.
//
// N is AERIE_BENCH_FORWARD_MESSAGES (default 20,000).
func BenchmarkForwarding(b *testing.B) {
	n := envInt("AERIE_BENCH_FORWARD_MESSAGES", 20000)
	ctx := context.Background()
	sink := newBenchSink(b)
	dsn := pgtest.EmptyDSN(b)
	pt := freePorts(b)
	pem := &hook{srv: sink.srv}
	p := start(b, cleanEnv("DATABASE_URL="+dsn, "AERIE_FORWARD_CA_FILE="+caFileB(b, pem), "AERIE_FORWARD_ALLOW_PRIVATE=true"),
		append([]string{"serve", "--data-dir", newDataDir(b)}, pt.args()...)...)
	waitReady(b, p, pt.http, 60*time.Second)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE plans SET quotas = quotas || '{"max_connections":0,"max_connects_per_second":0,"max_publish_per_second":0,"max_publish_per_second_per_client":0,"max_bytes_per_second":0}'::jsonb WHERE id = 'enterprise'`); err != nil {
		b.Fatal(err)
	}
	pool.Close()
	base := "http://" + pt.http
	c, org := signup(b, base, "fwd-bench@example.com")
	c.call(b, "PUT", "/v1/orgs/"+org+"/subscription", map[string]any{"plan": "enterprise"}, 200, nil)
	var inst instanceOut
	c.call(b, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "bench"}, 201, &inst)
	waitRunning(b, c, org, inst.ID)
	ip := "/v1/orgs/" + org + "/instances/" + inst.ID
	var cred credOut
	c.call(b, "POST", ip+"/credentials", map[string]any{"username": "dev"}, 201, &cred)
	var tp topicOut
	c.call(b, "POST", ip+"/topics", map[string]any{"name": "fwd", "filter": "fwd/#"}, 201, &tp)
	var r ruleOut
	c.call(b, "POST", ip+"/rules", map[string]any{"name": "bench", "filter": "fwd/#", "sink": map[string]any{"type": "webhook", "url": sink.srv.URL}}, 201, &r)
	rp := ip + "/rules/" + r.ID
	if !within(20*time.Second, func() bool {
		var st ruleStatusOut
		c.call(b, "GET", rp+"/status", nil, 200, &st)
		return st.State == "active"
	}) {
		b.Fatal("rule not running")
	}
	for range b.N {
		q, err := mqttload.Flow(ctx, pt.mqtt, mqttload.FlowOptions{Publishers: 10, Subscribers: 1, Messages: n / 10, Payload: 100, QoS: 1,
			User: func(int) (string, string) { return cred.MQTTUsername, cred.Password }, Settle: 2 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("MQTT QoS 1: %s", q)

		sink.reset()
		t0 := time.Now()
		publishTimed(b, pt.mqtt, cred.MQTTUsername, cred.Password, 10, n, 0)
		pubRate := float64(n) / time.Since(t0).Seconds()
		if !within(5*time.Minute, func() bool { return sink.count() >= n }) {
			b.Fatalf("forwarded %d of %d", sink.count(), n)
		}
		sink.mu.Lock()
		fwdRate := float64(n) / sink.last.Sub(t0).Seconds()
		sink.mu.Unlock()

		sink.reset()
		paced := min(n, 5000)
		publishTimed(b, pt.mqtt, cred.MQTTUsername, cred.Password, 10, paced, 1000)
		if !within(time.Minute, func() bool { return sink.count() >= paced }) {
			b.Fatalf("paced: forwarded %d of %d", sink.count(), paced)
		}
		p99 := sink.p99()

		group := "bench" + strconv.Itoa(int(time.Now().UnixNano()))
		t1 := time.Now()
		read := 0
		for read < n+paced {
			var batch polled
			c.call(b, "GET", ip+"/topics/"+tp.ID+"/messages?group="+group+"&limit=1000&wait=1", nil, 200, &batch)
			if len(batch.Messages) == 0 {
				break
			}
			offs := make([]uint64, len(batch.Messages))
			for i, m := range batch.Messages {
				offs[i] = m.Offset
			}
			c.call(b, "POST", ip+"/topics/"+tp.ID+"/messages/ack", map[string]any{"group": group, "offsets": offs}, 200, nil)
			read += len(batch.Messages)
		}
		if read < n+paced {
			b.Fatalf("group read %d of %d", read, n+paced)
		}
		groupRate := float64(read) / time.Since(t1).Seconds()

		b.Logf("forwarded %d messages at %.0f msg/s (published at %.0f msg/s); MQTT QoS 1 %.0f msg/s; p99 device→webhook %v at 1,000 msg/s; group read %.0f msg/s",
			n, fwdRate, pubRate, q.Rate, p99, groupRate)
		b.ReportMetric(q.Rate, "qos1-msg/s")
		b.ReportMetric(fwdRate, "fwd-msg/s")
		b.ReportMetric(fwdRate/q.Rate, "fwd/qos1")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(groupRate, "group-msg/s")
		b.ReportMetric(groupRate/q.Rate, "group/qos1")
	}
}
