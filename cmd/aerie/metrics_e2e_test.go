package main_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// TestMetricsListener: /metrics is not on the public HTTP port; the metrics
// listener (--metrics-addr) exposes the Go, process and build families, HTTP
// request metrics by route template, the control-plane gauges, and per
// instance series labelled aerie_instance (with org in aerie_instance_info);
// a deleted instance's series are gone at the first scrape after its node
// learned of the deletion.
func TestMetricsListener(t *testing.T) {
	pp := freePorts(t)
	mp := freePorts(t).http
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", newDataDir(t), "--metrics-addr", mp}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	base := "http://" + pp.http
	scrape := func(t *testing.T) string {
		t.Helper()
		res, err := http.Get("http://" + mp + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("metrics listener: %d %s", res.StatusCode, b)
		}
		return string(b)
	}

	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the public HTTP port: %d, want 404", res.StatusCode)
	}

	c, org := signup(t, base, "metrics@example.com")
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "dash"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	var cred credOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances/"+inst.ID+"/credentials", map[string]any{"username": "dev"}, 201, &cred)
	time.Sleep(300 * time.Millisecond) // the credential reaches the node
	cl, code := connect5(t, pp.mqtt, "m-dev", cred.MQTTUsername, cred.Password, func(*paho.Publish) {})
	if code != 0 {
		t.Fatalf("connect refused 0x%02x", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Publish(ctx, &paho.Publish{Topic: "a/b", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}

	body := scrape(t)
	for _, want := range []string{
		"go_goroutines ", "go_memstats_heap_alloc_bytes ", "process_resident_memory_bytes ", "process_open_fds ",
		`aerie_build_info{commit=`,
		`aerie_http_requests_total{code="201",method="POST",route="/v1/orgs/{org_id}/instances"} 1`,
		`aerie_http_request_duration_seconds_bucket{method="POST",route="/v1/orgs/{org_id}/instances",le=`,
		"aerie_nodes_up 1", `aerie_node_up{cell="local",node=`, `aerie_cell_nodes_up{cell="local"} 1`, `aerie_node_config_revision_lag{node=`, "aerie_config_outbox_depth ",
		"aerie_controlplane_database_up 1",
		`aerie_connections{aerie_instance="` + inst.ID + `"} 1`,
		`aerie_messages_in_total{aerie_instance="` + inst.ID + `"} 1`,
		`aerie_instance_info{aerie_instance="` + inst.ID + `",org="` + org + `"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(body, `{instance="`) {
		t.Errorf("a series still uses the label instance, which collides with Prometheus's target label")
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", body)
		return
	}

	c.call(t, "DELETE", "/v1/orgs/"+org+"/instances/"+inst.ID, nil, 204, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		body = scrape(t)
		if !strings.Contains(body, `aerie_instance_info{aerie_instance="`+inst.ID+`"`) {
			break // the node no longer has the instance
		}
		if time.Now().After(deadline) {
			t.Fatal("the node still has the deleted instance after 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(body, `aerie_instance="`+inst.ID+`"`) {
		t.Errorf("series of the deleted instance remain:\n%s", grepLines(body, inst.ID))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
