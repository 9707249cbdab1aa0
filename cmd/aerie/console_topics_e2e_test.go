package main_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/internal/browsertest"
	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestConsoleTopics (issue 17 item 4) against a real `aerie serve` in
// headless chromium with a real MQTT 5 device and an application reading
// over the API:
//   - a topic created in the Topics tab is applied by the node (the device's
//     messages are stored in its queue and readable by a consumer group);
//   - the topic's page shows the bytes the node stores for it and the group
//     with its lag and messages awaiting ack, as the API's groups route says;
//   - strict mode switched on in the page refuses a device publish outside
//     every topic (PUBACK 0x87) and accepts one inside;
//   - editing the policy reaches the node (QoS above the new maximum is
//     refused); deleting asks first, naming the group it cuts off.
//
// Screenshots at 1280 and 375 px; nothing wider than the viewport.
func TestConsoleTopics(t *testing.T) {
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", newDataDir(t)}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	s := browserSteps{t: t, wait: 30 * time.Second}
	const email = "topics-ui@example.com"
	owner, org := signup(t, base, email)
	var inst instanceOut
	owner.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "fleet"}, 201, &inst)
	waitRunning(t, owner, org, inst.ID)
	var cred credOut
	ip := "/v1/orgs/" + org + "/instances/" + inst.ID
	owner.call(t, "POST", ip+"/credentials", map[string]any{"username": "dev"}, 201, &cred)

	b := browsertest.New(t, 1280, 900)
	s.do(b, "log in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), email),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`[data-testid="login-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
	)
	topics := base + "/orgs/" + org + "/instances/" + inst.ID + "/topics"
	s.do(b, "topics tab",
		chromedp.Navigate(base+"/orgs/"+org+"/instances/"+inst.ID),
		chromedp.Click(chromedp.CSS(`nav.tabs a[href$="/topics"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="no-topics"]`)),
	)
	s.shotAndFit(b, "01-topics-empty-1280")
	s.do(b, "create topic",
		chromedp.SendKeys(chromedp.CSS(`#f-name`), "telemetry"),
		chromedp.SendKeys(chromedp.CSS(`#f-filter`), "fleet/+/telemetry"),
		chromedp.SendKeys(chromedp.CSS(`#f-retention_seconds`), "3600"),
		chromedp.Click(chromedp.CSS(`[data-testid="create-topic"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="topic-telemetry"]`)),
	)
	var list struct{ Data []topicOut }
	owner.call(t, "GET", ip+"/topics", nil, 200, &list)
	if len(list.Data) != 1 || list.Data[0].Filter != "fleet/+/telemetry" || list.Data[0].RetentionSeconds != 3600 {
		t.Fatalf("topics after the form: %+v", list.Data)
	}
	tid := list.Data[0].ID

	// A device publishes 5 messages; an application reads 3 as group "app"
	// and acknowledges the first 2.
	dev := connectV5(t, pp.mqtt, "dev-1", cred.MQTTUsername, cred.Password)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pubCode := func(topic string, qos byte) byte {
		t.Helper()
		r, err := dev.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte("reading")})
		if r == nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
		return r.ReasonCode
	}
	for i := range 5 {
		if rc := pubCode(fmt.Sprintf("fleet/d%d/telemetry", i), 1); rc != 0 {
			t.Fatalf("publish %d: 0x%02x", i, rc)
		}
	}
	var batch struct {
		Messages []struct{ Offset int64 }
	}
	owner.call(t, "GET", ip+"/topics/"+tid+"/messages?group=app&limit=3&wait=5", nil, 200, &batch)
	if len(batch.Messages) != 3 {
		t.Fatalf("read %d messages, want 3", len(batch.Messages))
	}
	owner.call(t, "POST", ip+"/topics/"+tid+"/messages/ack", map[string]any{"group": "app", "offsets": []int64{batch.Messages[0].Offset, batch.Messages[1].Offset}}, 200, nil)
	var groups struct {
		Data []struct {
			Group   string
			Lag     int
			Pending int
		}
	}
	owner.call(t, "GET", ip+"/topics/"+tid+"/groups", nil, 200, &groups)
	if len(groups.Data) != 1 || groups.Data[0].Group != "app" || groups.Data[0].Lag != 3 || groups.Data[0].Pending != 1 {
		t.Fatalf("API groups %+v, want app with lag 3 and 1 pending", groups.Data)
	}

	// The topic's page: storage and the group's lag, as the API says.
	s.do(b, "topic page", chromedp.Click(chromedp.CSS(`[data-testid="topic-telemetry"] a`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="group-app"]`)))
	if got := s.text(b, `[data-testid="group-app"] [data-testid="group-lag"]`); got != "3" {
		t.Errorf("group lag shown %q, want 3", got)
	}
	if got := s.text(b, `[data-testid="group-app"] [data-testid="group-pending"]`); got != "1" {
		t.Errorf("group awaiting ack shown %q, want 1", got)
	}
	if got := s.text(b, `[data-testid="topic-stored"]`); got == "unknown" || got == "0 B" || !strings.HasSuffix(got, "B") {
		t.Errorf("stored %q, want the node's byte count", got)
	}
	s.shotAndFit(b, "02-topic-groups-1280")
	s.do(b, "back to list", chromedp.Navigate(topics), chromedp.WaitVisible(chromedp.CSS(`[data-testid="topic-telemetry"]`)))
	if got := s.text(b, `[data-testid="topic-telemetry"] [data-testid="topic-groups"]`); !strings.Contains(got, "1 group") || !strings.Contains(got, "lag 3") {
		t.Errorf("list's groups column %q", got)
	}

	// Strict mode from the page.
	s.do(b, "strict on", chromedp.Click(chromedp.CSS(`[data-testid="strict-on"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="strict-off"]`)))
	if got := s.text(b, `[data-testid="strict-state"]`); got != "on" {
		t.Errorf("strict state %q", got)
	}
	if rc := pubCode("elsewhere/a", 1); rc != 0x87 {
		t.Errorf("strict mode: publish outside every topic got 0x%02x, want 0x87", rc)
	}
	if rc := pubCode("fleet/d9/telemetry", 1); rc != 0 {
		t.Errorf("strict mode: publish inside a topic got 0x%02x, want 0", rc)
	}
	s.shotAndFit(b, "03-strict-on-1280")

	// Edit the policy: QoS 1 is then refused on the topic.
	s.do(b, "edit",
		chromedp.Click(chromedp.CSS(`[data-testid="topic-telemetry"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="edit-topic"]`)),
		chromedp.SetValue(chromedp.CSS(`#f-max_qos`), "0"),
		chromedp.Click(chromedp.CSS(`[data-testid="edit-topic"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="flash"]`)),
	)
	if rc := pubCode("fleet/d1/telemetry", 1); rc != 0x87 {
		t.Errorf("after max QoS 0: a QoS 1 publish got 0x%02x, want 0x87", rc)
	}

	// On a phone the pages fit.
	phone := browsertest.New(t, 375, 800)
	s.do(phone, "phone log in",
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-form"]`)),
		chromedp.SendKeys(chromedp.CSS(`#f-email`), email),
		chromedp.SendKeys(chromedp.CSS(`#f-password`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`[data-testid="login-form"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="org-name"]`)),
	)
	s.do(phone, "phone topics", chromedp.Navigate(topics), chromedp.WaitVisible(chromedp.CSS(`[data-testid="topic-telemetry"]`)))
	s.shotAndFit(phone, "04-topics-375")
	s.do(phone, "phone topic", chromedp.Navigate(topics+"/"+tid), chromedp.WaitVisible(chromedp.CSS(`[data-testid="group-app"]`)))
	s.shotAndFit(phone, "05-topic-375")

	// Delete asks first, naming what it cuts off.
	s.do(b, "delete asks", chromedp.Click(chromedp.CSS(`[data-testid="delete-topic"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="confirm-ask"]`)))
	if got := s.text(b, `[data-testid="confirm-ask"]`); !strings.Contains(got, "Its 1 consumer group can no longer read it") || !strings.Contains(got, "Strict mode is on") {
		t.Errorf("delete confirmation %q", got)
	}
	s.shotAndFit(b, "06-delete-confirm-1280")
	s.do(b, "delete", chromedp.Click(chromedp.CSS(`[data-testid="confirm-yes"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid="no-topics"]`)))
	owner.call(t, "GET", ip+"/topics/"+tid, nil, 404, nil)
}
