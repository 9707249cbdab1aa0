package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// sseEvent is one Server-Sent Event (or a heartbeat comment).
type sseEvent struct {
	id, event, data string
	heartbeat       bool
}

// openStream opens a topic's event stream with the key; events arrive on
// the channel until the stream ends or cancel is called.
func openStream(t *testing.T, base, path, key string) (<-chan sseEvent, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream: %v", err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		t.Fatalf("stream: %d %s: %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	ch := make(chan sseEvent, 100)
	go func() {
		defer close(ch)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (sseEvent{}) {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev.heartbeat = true
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return ch, cancel
}

type streamedMessage struct {
	Offset  uint64 `json:"offset"`
	Topic   string `json:"topic"`
	Payload []byte `json:"payload"`
	QoS     int    `json:"qos"`
}

// nextMessage waits for the stream's next message event (skipping
// heartbeats) and checks that its id is its offset.
func nextMessage(t *testing.T, ch <-chan sseEvent) streamedMessage {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.heartbeat && ev.event == "" {
				continue
			}
			if ev.event != "message" {
				t.Fatalf("event %q: %s", ev.event, ev.data)
			}
			var m streamedMessage
			if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
				t.Fatalf("event data %q: %v", ev.data, err)
			}
			if ev.id != strconv.FormatUint(m.Offset, 10) {
				t.Fatalf("event id %q, message offset %d", ev.id, m.Offset)
			}
			return m
		case <-timeout:
			t.Fatal("no message event within 10 s")
		}
	}
}

// TestTopicStreamRawAndConsumeScope (issue 17 item 2) against `aerie
// serve`, with an API key of the new `consume` scope: a Server-Sent Events
// stream gets device messages published after it opened (heartbeats while
// idle, event id = offset), commits what it wrote, and a reconnect with
// the same group resumes after the committed offset; Accept:
// application/octet-stream answers the raw payload bytes (binary, not
// UTF-8) with the metadata in headers; the consume key reads and commits
// but is refused (403) everything else, a read key still reads, and a key
// of another org gets 404.
func TestTopicStreamRawAndConsumeScope(t *testing.T) {
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	c, org := signup(t, base, "stream@example.com")
	other, otherOrg := signup(t, base, "stream-other@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "s"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	ip := "/v1/orgs/" + org + "/instances/" + inst.ID
	var tp topicOut
	c.callPrefer(t, 5, "POST", ip+"/topics", map[string]any{"name": "sensors", "filter": "s/#"}, &tp)
	var cred credOut
	c.callPrefer(t, 5, "POST", ip+"/credentials", map[string]any{"username": "dev"}, &cred)
	key := func(a api, org, scope string) string {
		var k struct{ Secret string }
		a.call(t, "POST", "/v1/orgs/"+org+"/api-keys", map[string]any{"name": scope + "-app", "scopes": []string{scope}}, 201, &k)
		return k.Secret
	}
	consumeKey, readKey, otherKey := key(c, org, "consume"), key(c, org, "read"), key(other, otherOrg, "consume")
	app := api{base: base, token: consumeKey}
	time.Sleep(300 * time.Millisecond) // the node registers the topic queue
	dev, err := connect3(pp.mqtt, "dev", cred.MQTTUsername, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Disconnect(100)
	publish := func(topic string, payload []byte) {
		t.Helper()
		if tk := dev.Publish(topic, 1, false, payload); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("publish %s: %v", topic, tk.Error())
		}
	}
	msgs := ip + "/topics/" + tp.ID + "/messages"

	t.Run("event stream: messages after it opened, resumed after the commit", func(t *testing.T) {
		ch, cancel := openStream(t, base, msgs+"?group=sse&start=latest&wait=1&lease=1", consumeKey)
		// The stream is open (and the group placed at latest) once a
		// heartbeat has come.
		waitBeat := func(within time.Duration) {
			t.Helper()
			timeout := time.After(within)
			for {
				select {
				case ev := <-ch:
					if ev.heartbeat && ev.event == "" {
						return
					}
				case <-timeout:
					t.Fatalf("no heartbeat within %v", within)
				}
			}
		}
		waitBeat(5 * time.Second)
		var last uint64
		for i := 1; i <= 3; i++ {
			publish("s/a", []byte("m"+strconv.Itoa(i)))
			m := nextMessage(t, ch)
			if string(m.Payload) != "m"+strconv.Itoa(i) || m.Topic != "s/a" || m.QoS != 1 || m.Offset <= last {
				t.Fatalf("message %d: %+v after offset %d", i, m, last)
			}
			last = m.Offset
		}
		// Idle again: heartbeats every wait (1 s).
		waitBeat(3 * time.Second)
		cancel()
		// Auto commit: the group's committed offset reaches the last
		// message written (a JSON poll that finds nothing new shows it).
		deadline := time.Now().Add(5 * time.Second)
		for {
			var b polled
			app.call(t, "GET", msgs+"?group=sse&limit=1", nil, 200, &b)
			if len(b.Messages) > 0 {
				t.Fatalf("a committed message came again: %+v", b.Messages)
			}
			if b.Committed == last {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("committed %d, want %d", b.Committed, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Past the 1 s lease an uncommitted message would be handed out
		// again: the reconnect must start after the commit instead.
		time.Sleep(1200 * time.Millisecond)
		publish("s/b", []byte("m4"))
		publish("s/b", []byte("m5"))
		ch, cancel = openStream(t, base, msgs+"?group=sse&wait=1", consumeKey)
		defer cancel()
		for i := 4; i <= 5; i++ {
			m := nextMessage(t, ch)
			if string(m.Payload) != "m"+strconv.Itoa(i) || m.Offset <= last {
				t.Fatalf("after reconnect: %+v (committed %d), want m%d", m, last, i)
			}
			last = m.Offset
		}
	})

	t.Run("raw payload per Accept", func(t *testing.T) {
		raw := func(query string) (*http.Response, []byte) {
			req, _ := http.NewRequest("GET", base+msgs+query, nil)
			req.Header.Set("Authorization", "Bearer "+consumeKey)
			req.Header.Set("Accept", "application/octet-stream")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res, b
		}
		if res, b := raw("?group=raw&start=latest"); res.StatusCode != 204 || len(b) != 0 {
			t.Fatalf("nothing new: %d %q", res.StatusCode, b)
		}
		payload := []byte{0xff, 0x00, 0xfe, 0x80, '\n', 0xc3, 0x28}
		publish("s/bin/ü", payload)
		res, b := raw("?group=raw&limit=1&wait=5")
		h := res.Header
		if res.StatusCode != 200 || !bytes.Equal(b, payload) || h.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("raw: %d %s %x, want %x", res.StatusCode, h.Get("Content-Type"), b, payload)
		}
		at, err := time.Parse(time.RFC3339Nano, h.Get("Aerie-Published-At"))
		if h.Get("Aerie-Topic") != "s/bin/%C3%BC" || h.Get("Aerie-Qos") != "1" || h.Get("Aerie-Retain") != "false" ||
			err != nil || time.Since(at) > time.Minute || h.Get("Aerie-Offset") == "" {
			t.Fatalf("raw headers: %v", h)
		}
		// The JSON batch carries the same bytes in base64.
		var bj polled
		app.call(t, "GET", msgs+"?group=json-bin&start=earliest&limit=1000", nil, 200, &bj)
		found := false
		for _, m := range bj.Messages {
			found = found || strconv.FormatUint(m.Offset, 10) == h.Get("Aerie-Offset") && bytes.Equal(m.Payload, payload)
		}
		if !found {
			t.Fatalf("JSON batch lacks offset %s with the payload", h.Get("Aerie-Offset"))
		}
		if res, _ := raw("?group=raw&limit=2"); res.StatusCode != 400 {
			t.Fatalf("limit=2 raw: %d, want 400", res.StatusCode)
		}
	})

	t.Run("consume scope: reads and commits, nothing else", func(t *testing.T) {
		var b polled
		app.call(t, "GET", msgs+"?group=acks&limit=1", nil, 200, &b)
		if len(b.Messages) != 1 {
			t.Fatalf("consume key read %d messages", len(b.Messages))
		}
		app.call(t, "POST", msgs+"/ack", map[string]any{"group": "acks", "offsets": []uint64{b.Messages[0].Offset}}, 200, nil)
		api{base: base, token: readKey}.call(t, "GET", msgs+"?group=reader&limit=1", nil, 200, nil)
		for _, q := range []struct{ method, path string }{
			{"POST", ip + "/credentials"},
			{"GET", ip + "/credentials"},
			{"POST", ip + "/credentials/" + cred.ID + "/rotate"},
			{"GET", "/v1/orgs/" + org + "/instances"},
			{"GET", ip + "/topics"},
			{"GET", "/v1/orgs/" + org + "/api-keys"},
			{"POST", ip + "/publish"},
		} {
			app.call(t, q.method, q.path, map[string]any{}, 403, nil)
		}
		api{base: base, token: otherKey}.call(t, "GET", msgs+"?group=x", nil, 404, nil)
		api{base: base, token: otherKey}.call(t, "POST", msgs+"/ack", map[string]any{"group": "x", "offsets": []uint64{1}}, 404, nil)
	})
}
