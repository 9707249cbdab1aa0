package main_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestBurstOverQuotaIsCountedExactly (issue 14): through `aerie serve`, on
// the Free plan (20 publishes/s per client, 100 per instance), six devices
// — MQTT 3.1.1 and 5, QoS 0, 1 and 2 — each publish 30 messages at once:
// every one is acknowledged and delivered to both subscribers (back-
// pressure, no drop), and the metrics API, Prometheus /metrics and the
// month's draft invoice count exactly what the devices sent and received.
func TestBurstOverQuotaIsCountedExactly(t *testing.T) {
	pp := freePorts(t)
	mp := freePorts(t).http // the operators' /metrics listener
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", newDataDir(t), "--metrics-addr", mp}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	c, org := signup(t, base, "burst@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "bursty"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	var cred credOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "dev"}, 201, &cred)
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Two subscribers, MQTT 5 (QoS 2) and MQTT 3.1.1 (QoS 2), count what
	// they receive.
	var mu sync.Mutex
	got := map[string]int{}
	sub5, code := connect5(t, pp.mqtt, "burst-sub5", cred.MQTTUsername, cred.Password, func(*paho.Publish) { mu.Lock(); got["v5"]++; mu.Unlock() })
	if code != 0 {
		t.Fatalf("subscriber refused 0x%02x", code)
	}
	if _, err := sub5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "b/#", QoS: 2}}}); err != nil {
		t.Fatal(err)
	}
	sub3, err := connect3(pp.mqtt, "burst-sub3", cred.MQTTUsername, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer sub3.Disconnect(0)
	if tok := sub3.Subscribe("b/#", 2, func(mqtt3.Client, mqtt3.Message) { mu.Lock(); got["v3"]++; mu.Unlock() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal("subscribe")
	}

	const perClient = 30                                                          // at once, against 20 a second
	payload := func(i int) []byte { return []byte(strings.Repeat("p", i*200+1)) } // up to 5.8 KB: some cost two units
	var sent, bytes, units int64
	for i := range perClient {
		n := int64(len(payload(i)))
		bytes += n
		units += (n + 5*1024 - 1) / (5 * 1024)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for _, qos := range []byte{0, 1, 2} {
		wg.Add(2)
		go func() { // MQTT 5
			defer wg.Done()
			pub, code := connect5(t, pp.mqtt, fmt.Sprintf("burst-pub5-%d", qos), cred.MQTTUsername, cred.Password, nil)
			if code != 0 {
				errs <- fmt.Errorf("v5 publisher refused 0x%02x", code)
				return
			}
			for i := range perClient {
				pr, err := pub.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("b/5/%d", qos), QoS: qos, Payload: payload(i)})
				if err != nil || (qos > 0 && pr.ReasonCode != 0) {
					errs <- fmt.Errorf("v5 QoS %d publish %d: %+v %v", qos, i, pr, err)
					return
				}
			}
		}()
		go func() { // MQTT 3.1.1, asynchronous: as fast as the client can
			defer wg.Done()
			pub, err := connect3(pp.mqtt, fmt.Sprintf("burst-pub3-%d", qos), cred.MQTTUsername, cred.Password)
			if err != nil {
				errs <- err
				return
			}
			defer pub.Disconnect(250)
			var toks []mqtt3.Token
			for i := range perClient {
				toks = append(toks, pub.Publish(fmt.Sprintf("b/3/%d", qos), qos, false, payload(i)))
			}
			for i, tok := range toks {
				if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("v3 QoS %d publish %d: %v", qos, i, tok.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sent = 6 * perClient
	took := time.Since(start)
	// 180 messages against 100 a second for the instance (a second's worth
	// at once): the node held the publishers back.
	if took < 600*time.Millisecond {
		t.Fatalf("180 publishes took %s: not held back", took)
	}
	t.Logf("180 publishes over the quota took %s", took)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		v5, v3 := got["v5"], got["v3"]
		mu.Unlock()
		if v5 == int(sent) && v3 == int(sent) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d (v5) and %d (v3.1.1) of %d", v5, v3, sent)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	if got["v5"] != int(sent) || got["v3"] != int(sent) {
		t.Fatalf("delivered %v, want %d each (no duplicates)", got, sent)
	}
	mu.Unlock()

	wantIn, wantOut := sent, 2*sent
	wantBytesIn, wantBytesOut := 6*bytes, 12*bytes
	wantUnits := 6*units + 12*units

	// Prometheus, on the node: at once.
	prom := scrape(t, "http://"+mp+"/metrics", inst.ID)
	if prom["aerie_messages_in_total"] != float64(wantIn) || prom["aerie_messages_out_total"] != float64(wantOut) ||
		prom["aerie_bytes_in_total"] != float64(wantBytesIn) || prom["aerie_bytes_out_total"] != float64(wantBytesOut) || prom["aerie_drops_total"] != 0 {
		t.Fatalf("/metrics says %v; devices sent %d (%d B) and received %d (%d B), nothing dropped", prom, wantIn, wantBytesIn, wantOut, wantBytesOut)
	}
	if prom["aerie_publish_throttled_seconds_total"] <= 0 {
		t.Fatalf("/metrics shows no time held back: %v", prom)
	}

	// The metrics API and the draft invoice: after the node's next usage
	// report (every 10 s).
	type point struct {
		MessagesIn  int64 `json:"messages_in"`
		MessagesOut int64 `json:"messages_out"`
		BytesIn     int64 `json:"bytes_in"`
		BytesOut    int64 `json:"bytes_out"`
		Drops       int64 `json:"-"`
	}
	type apiPoint struct {
		point
		Drops map[string]int64 `json:"drops"`
	}
	apiSum := func() point {
		var m struct{ Points []apiPoint }
		now := time.Now().UTC()
		q := "?step=10s&from=" + now.Add(-5*time.Minute).Format(time.RFC3339) + "&to=" + now.Add(time.Minute).Format(time.RFC3339)
		c.call(t, "GET", "/v1/orgs/"+org+"/instances/"+inst.ID+"/metrics"+q, nil, 200, &m)
		var s point
		for _, p := range m.Points {
			s.MessagesIn += p.MessagesIn
			s.MessagesOut += p.MessagesOut
			s.BytesIn += p.BytesIn
			s.BytesOut += p.BytesOut
			for _, n := range p.Drops {
				s.Drops += n
			}
		}
		return s
	}
	billed := func() int64 {
		var d struct {
			Usage struct {
				MessageUnits int64 `json:"message_units"`
			}
		}
		c.call(t, "GET", "/v1/orgs/"+org+"/usage", nil, 200, &d)
		return d.Usage.MessageUnits
	}
	want := point{MessagesIn: wantIn, MessagesOut: wantOut, BytesIn: wantBytesIn, BytesOut: wantBytesOut}
	var s point
	var u int64
	for deadline := time.Now().Add(40 * time.Second); ; {
		s, u = apiSum(), billed()
		if s == want && u == wantUnits || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if s != want {
		t.Fatalf("metrics API says %+v, devices did %+v", s, want)
	}
	if u != wantUnits {
		t.Fatalf("draft invoice bills %d message units, devices moved %d", u, wantUnits)
	}
}

// scrape reads the Prometheus text exposition and returns the instance's
// samples by metric name (summed over other labels).
func scrape(t *testing.T, url, instance string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.Contains(line, `aerie_instance="`+instance+`"`) {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		_, val, _ := strings.Cut(rest, "} ")
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[name] += v
	}
	return out
}
