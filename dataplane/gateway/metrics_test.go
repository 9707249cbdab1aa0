package gateway

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aeriemq/aerie/dataplane/config"
)

func usageOf(us []config.InstanceUsage, id string) (config.InstanceUsage, bool) {
	for _, u := range us {
		if u.InstanceID == id {
			return u, true
		}
	}
	return config.InstanceUsage{}, false
}

// TestMetricsAreExactPerInstance counts what clients sent and received and
// checks the drained usage and the Prometheus exposition equal it exactly.
func TestMetricsAreExactPerInstance(t *testing.T) {
	b := newBundle(t)
	m := b.gw.Metrics()
	m.DrainUsage() // start from zero
	if _, err := b.v3(t, "x", "dev@i-aaaa", "wrong", nil); err == nil {
		t.Fatal("wrong password accepted")
	}
	got := make(chan struct{}, 100)
	c, err := b.v3(t, "counter", "dev@i-aaaa", "pw-dev", func(string, []byte) { got <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Subscribe("count/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	const n, size = 40, 6000 // 6000 B = 2 message units each
	payload := strings.Repeat("x", size)
	for i := 0; i < n; i++ {
		if tok := c.Publish(fmt.Sprintf("count/%d", i), 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// Denied by the instance's deny rule: counted as an ACL drop, not as in.
	c.Publish("forbidden/x", 0, false, "no").WaitTimeout(5 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("received %d of %d", i, n)
		}
	}
	time.Sleep(100 * time.Millisecond)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		fmt.Sprintf(`aerie_messages_in_total{aerie_instance="i-aaaa"} %d`, n),
		fmt.Sprintf(`aerie_messages_out_total{aerie_instance="i-aaaa"} %d`, n),
		fmt.Sprintf(`aerie_bytes_in_total{aerie_instance="i-aaaa"} %d`, n*size),
		`aerie_connections{aerie_instance="i-aaaa"} 1`,
		`aerie_subscriptions{aerie_instance="i-aaaa"} 1`,
		`aerie_drops_total{aerie_instance="i-aaaa",reason="acl"} 1`,
		`aerie_auth_failures_total{aerie_instance="i-aaaa"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(strings.ReplaceAll(string(body), `aerie_instance_info{aerie_instance="i-bbbb"`, ""), `aerie_instance="i-bbbb"`) {
		t.Errorf("instance B has metrics it never earned:\n%s", body)
	}

	us := m.DrainUsage()
	u, ok := usageOf(us, "i-aaaa")
	if !ok {
		t.Fatalf("no usage for i-aaaa: %+v", us)
	}
	if u.MessagesIn != n || u.MessagesOut != n || u.BytesIn != n*size || u.BytesOut != n*size ||
		u.MessageUnitsIn != 2*n || u.MessageUnitsOut != 2*n || u.Connects != 1 || u.AuthFailures != 1 ||
		u.Connections != 1 || u.Drops[DropACL] != 1 {
		t.Fatalf("usage %+v", u)
	}
	if _, ok := usageOf(us, "i-bbbb"); ok {
		t.Errorf("instance B reported: %+v", us)
	}
	again, _ := usageOf(m.DrainUsage(), "i-aaaa")
	if again.MessagesIn != 0 || again.Connects != 0 || again.Connections != 1 {
		t.Errorf("second drain counted again: %+v", again)
	}
	c.Disconnect(100)
	if !waitFor(t, 2*time.Second, func() bool { u, _ := usageOf(m.DrainUsage(), "i-aaaa"); return u.Connections == 0 }) {
		t.Error("connection gauge did not fall after disconnect")
	}
}

func TestUnits(t *testing.T) {
	cases := map[int]int64{0: 1, 1: 1, 5120: 1, 5121: 2, 10240: 2, 10241: 3}
	for size, want := range cases {
		if got := units(size); got != want {
			t.Errorf("units(%d) = %d, want %d", size, got, want)
		}
	}
}
