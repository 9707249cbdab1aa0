package main_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/aeriemq/aerie/internal/pgtest"
)

type polled struct {
	Messages []struct {
		Offset      uint64 `json:"offset"`
		Topic       string `json:"topic"`
		Payload     []byte `json:"payload"`
		QoS         int    `json:"qos"`
		Redelivered bool   `json:"redelivered"`
	} `json:"messages"`
	Committed uint64 `json:"committed"`
}

type storageOut struct {
	StoredBytes int64 `json:"stored_bytes"`
}

// TestConsumerGroupsEndToEnd (issue 17 items 1 and 2) against `aerie
// serve`: 10,000 QoS 1 device messages on fleet/+/telemetry are read over
// HTTP by two consumer groups (each gets all of them, once), then by a
// group of 3 concurrent readers (each message exactly once across them);
// the topic's stored bytes do not change with the groups; a reader that
// dies before acknowledging has its messages handed out again; a topic with
// 2 s retention no longer serves older messages and its storage drops to 0;
// another org gets 404.
func TestConsumerGroupsEndToEnd(t *testing.T) {
	const total = 10000
	ctx := context.Background()
	dsn := pgtest.EmptyDSN(t)
	pp := freePorts(t)
	mp := freePorts(t).http // the operators' /metrics listener
	p := start(t, cleanEnv("DATABASE_URL="+dsn, "AERIE_RETENTION_INTERVAL=1s", "AERIE_METRICS_ADDR="+mp), append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `UPDATE plans SET quotas = quotas || '{"max_publish_per_second":0,"max_publish_per_second_per_client":0,"max_bytes_per_second":0}'::jsonb WHERE id = 'enterprise'`); err != nil {
		t.Fatal(err)
	}
	c, org := signup(t, base, "groups@example.com")
	other, otherOrg := signup(t, base, "groups-other@example.com")
	c.call(t, "PUT", "/v1/orgs/"+org+"/subscription", map[string]any{"plan": "enterprise"}, 200, nil)
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "fleet"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	ip := "/v1/orgs/" + org + "/instances/" + inst.ID
	var tel, short topicOut
	c.callPrefer(t, 5, "POST", ip+"/topics", map[string]any{"name": "telemetry", "filter": "fleet/+/telemetry"}, &tel)
	c.callPrefer(t, 5, "POST", ip+"/topics", map[string]any{"name": "short", "filter": "short/#", "retention_seconds": 2}, &short)
	var cred credOut
	c.callPrefer(t, 5, "POST", ip+"/credentials", map[string]any{"username": "dev"}, &cred)
	time.Sleep(300 * time.Millisecond) // the node registers the topic queues

	dev, err := connect3(pp.mqtt, "dev", cred.MQTTUsername, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Disconnect(100)
	startPub := time.Now()
	for i := 0; i < total; i += 500 {
		var toks []interface {
			WaitTimeout(time.Duration) bool
			Error() error
		}
		for j := i; j < i+500; j++ {
			toks = append(toks, dev.Publish(fmt.Sprintf("fleet/d%d/telemetry", j%10), 1, false, strconv.Itoa(j)))
		}
		for _, tk := range toks {
			if !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
				t.Fatalf("publish: %v", tk.Error())
			}
		}
	}
	t.Logf("published %d QoS 1 messages in %v", total, time.Since(startPub))
	tp := ip + "/topics/" + tel.ID
	var before storageOut
	c.call(t, "GET", tp+"/storage", nil, 200, &before)
	if before.StoredBytes < total*10 {
		t.Fatalf("topic stores %d bytes for %d messages", before.StoredBytes, total)
	}

	if prom := scrape(t, "http://"+mp+"/metrics", inst.ID); prom["aerie_topic_stored_bytes"] != float64(before.StoredBytes) {
		t.Fatalf("/metrics aerie_topic_stored_bytes = %v, storage API %d", prom["aerie_topic_stored_bytes"], before.StoredBytes)
	}

	// read drains a group with one reader, acknowledging each batch.
	read := func(group string) map[int]int {
		seen := map[int]int{}
		for len(seen) < total {
			var b polled
			c.call(t, "GET", tp+"/messages?group="+group+"&limit=1000&wait=2", nil, 200, &b)
			if len(b.Messages) == 0 {
				t.Fatalf("group %s: empty batch after %d messages", group, len(seen))
			}
			var offs []uint64
			for _, m := range b.Messages {
				n, _ := strconv.Atoi(string(m.Payload))
				seen[n]++
				offs = append(offs, m.Offset)
			}
			c.call(t, "POST", tp+"/messages/ack", map[string]any{"group": group, "offsets": offs}, 200, nil)
		}
		return seen
	}
	for _, g := range []string{"analytics", "archive"} {
		seen := read(g)
		for i := range total {
			if seen[i] != 1 {
				t.Fatalf("group %s got message %d %d times", g, i, seen[i])
			}
		}
	}
	var after storageOut
	c.call(t, "GET", tp+"/storage", nil, 200, &after)
	if after.StoredBytes != before.StoredBytes {
		t.Fatalf("stored bytes changed with two groups: %d → %d", before.StoredBytes, after.StoredBytes)
	}

	// Three concurrent readers in one group: each message exactly once.
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var b polled
				st, _ := c.callPrefer(t, 0, "GET", tp+"/messages?group=shared&limit=200&wait=1&lease=60", nil, &b)
				if st != 200 {
					errs <- fmt.Errorf("reader %d: status %d", r, st)
					return
				}
				if len(b.Messages) == 0 {
					return
				}
				var offs []uint64
				mu.Lock()
				for _, m := range b.Messages {
					n, _ := strconv.Atoi(string(m.Payload))
					counts[n]++
					offs = append(offs, m.Offset)
				}
				mu.Unlock()
				if st, _ := c.callPrefer(t, 0, "POST", tp+"/messages/ack", map[string]any{"group": "shared", "offsets": offs}, nil); st != 200 {
					errs <- fmt.Errorf("reader %d: ack status %d", r, st)
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
	for i := range total {
		if counts[i] != 1 {
			t.Fatalf("shared group: message %d read %d times across 3 readers", i, counts[i])
		}
	}

	// A reader dies before acknowledging: its messages come again after the lease.
	var first, again polled
	c.call(t, "GET", tp+"/messages?group=flaky&start=latest&limit=10", nil, 200, &first)
	if len(first.Messages) != 0 {
		t.Fatalf("a new group at latest got %d old messages", len(first.Messages))
	}
	for j := range 5 {
		if tk := dev.Publish("fleet/d1/telemetry", 1, false, "late"+strconv.Itoa(j)); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	c.call(t, "GET", tp+"/messages?group=flaky&limit=10&wait=5&lease=1", nil, 200, &first)
	if len(first.Messages) != 5 {
		t.Fatalf("flaky reader got %d messages, want 5", len(first.Messages))
	}
	c.call(t, "GET", tp+"/messages?group=flaky&limit=10&wait=5&lease=30", nil, 200, &again)
	if len(again.Messages) != 5 || !again.Messages[0].Redelivered || again.Messages[0].Offset != first.Messages[0].Offset {
		t.Fatalf("after the reader died: %+v", again.Messages)
	}

	// Retention: messages older than the topic's 2 s are no longer readable.
	for j := range 20 {
		if tk := dev.Publish("short/x", 1, false, "s"+strconv.Itoa(j)); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	sp := ip + "/topics/" + short.ID
	var fresh polled
	c.call(t, "GET", sp+"/messages?group=early&limit=100", nil, 200, &fresh)
	if len(fresh.Messages) != 20 {
		t.Fatalf("short topic: %d messages readable at once, want 20", len(fresh.Messages))
	}
	var ss storageOut
	c.call(t, "GET", sp+"/storage", nil, 200, &ss)
	if ss.StoredBytes == 0 {
		t.Fatal("short topic stores nothing")
	}
	if !within(10*time.Second, func() bool {
		c.call(t, "GET", sp+"/storage", nil, 200, &ss)
		return ss.StoredBytes == 0
	}) {
		t.Fatalf("short topic still stores %d bytes", ss.StoredBytes)
	}
	var late polled
	c.call(t, "GET", sp+"/messages?group=late&limit=100", nil, 200, &late)
	if len(late.Messages) != 0 {
		t.Fatalf("a group reading after the retention got %d messages", len(late.Messages))
	}

	// Tenant scoping.
	other.call(t, "GET", "/v1/orgs/"+otherOrg+"/instances/"+inst.ID+"/topics/"+tel.ID+"/messages?group=x", nil, 404, nil)
}
