package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/aeriemq/aerie/internal/pgtest"
)

// callPrefer is api.call with `Prefer: wait=N`; it returns the status and
// the answer's headers (status 0 when the request failed).
func (a api) callPrefer(t testing.TB, wait int, method, path string, body, out any) (int, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Prefer", "wait="+strconv.Itoa(wait))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err) // may run off the test goroutine
		return 0, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Errorf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, resp.Header
}

// tryConnect5 connects once with MQTT 5 and disconnects; it returns the
// CONNACK reason code (0: accepted).
func tryConnect5(addr, clientID, user, pass string) (byte, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pass)})
	if err != nil {
		if ca == nil {
			return 0, fmt.Errorf("connect %s: %w", user, err)
		}
		return ca.ReasonCode, nil
	}
	_ = c.Disconnect(&paho.Disconnect{})
	return 0, nil
}

// readYourWritesRounds: n times create a credential with Prefer: wait and
// connect with it at once (all must be accepted), then n times disable one
// with Prefer: wait and connect at once (all must be refused). Rounds run
// four at a time.
func readYourWritesRounds(t *testing.T, c api, org, inst, mqttAddr string, n int) {
	t.Helper()
	base := "/v1/orgs/" + org + "/instances/" + inst + "/credentials"
	creds := make([]credOut, n)
	var mu sync.Mutex
	var fails []string
	fail := func(f string, args ...any) {
		mu.Lock()
		fails = append(fails, fmt.Sprintf(f, args...))
		mu.Unlock()
	}
	run := func(round func(i int)) {
		var wg sync.WaitGroup
		next := make(chan int)
		for range 4 {
			wg.Go(func() {
				for i := range next {
					round(i)
				}
			})
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	run(func(i int) {
		code, h := c.callPrefer(t, 5, "POST", base, map[string]any{"username": "ryw-" + strconv.Itoa(i)}, &creds[i])
		if code != 201 || h == nil || h.Get("Aerie-Config-Revision") == "" {
			fail("create %d: status %d, revision %q", i, code, h.Get("Aerie-Config-Revision"))
			return
		}
		rc, err := tryConnect5(mqttAddr, "ryw-c-"+strconv.Itoa(i), creds[i].MQTTUsername, creds[i].Password)
		if err != nil || rc != 0 {
			fail("create %d → connect: 0x%02x %v", i, rc, err)
		}
	})
	accepted := n - len(fails)
	run(func(i int) {
		if creds[i].ID == "" {
			return
		}
		code, _ := c.callPrefer(t, 5, "PATCH", base+"/"+creds[i].ID, map[string]any{"enabled": false}, nil)
		if code != 200 {
			fail("disable %d: status %d", i, code)
			return
		}
		rc, err := tryConnect5(mqttAddr, "ryw-d-"+strconv.Itoa(i), creds[i].MQTTUsername, creds[i].Password)
		if err != nil || rc == 0 {
			fail("disable %d → connect: accepted (0x%02x) %v", i, rc, err)
		}
	})
	t.Logf("read-your-writes: %d/%d created credentials connected at once; %d/%d disabled ones refused at once", accepted, n, n-(len(fails)-(n-accepted)), n)
	if len(fails) > 0 {
		t.Fatalf("%d of %d rounds failed:\n%s", len(fails), 2*n, strings.Join(fails, "\n"))
	}
}

// TestReadYourWritesServe: through `aerie serve`, 100 credentials created
// with Prefer: wait all connect at once, and 100 disabled with it are all
// refused at once.
func TestReadYourWritesServe(t *testing.T) {
	dataDir := newDataDir(t)
	pp := freePorts(t)
	p := start(t, cleanEnv("DATABASE_URL="+pgtest.EmptyDSN(t)), append([]string{"serve", "--data-dir", dataDir}, pp.args()...)...)
	waitReady(t, p, pp.http, 60*time.Second)
	c, org := signup(t, "http://"+pp.http, "ryw@example.com")
	// Free allows 10 connects a second; the rounds connect faster.
	c.call(t, "PUT", "/v1/orgs/"+org+"/subscription", map[string]any{"plan": "pro"}, 200, nil)
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "ryw"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	readYourWritesRounds(t, c, org, inst.ID, pp.mqtt, 100)
}

// TestOutageResync runs `aerie controlplane` and `aerie dataplane`: read-
// your-writes works across the split; with the control plane stopped for
// 60 s the node's /readyz turns 503 after the sync bound (10 s) while its
// devices stay connected; once the control plane answers again, a
// credential disabled right then has its live connection closed within
// 2 s, and the node list and instance show the node in sync.
func TestOutageResync(t *testing.T) {
	dsn := pgtest.EmptyDSN(t)
	env := cleanEnv("DATABASE_URL="+dsn, "AERIE_ADMIN_TOKEN=operator-secret-token-123")
	cpPorts := freePorts(t)
	cpArgs := []string{"controlplane", "--data-dir", newDataDir(t), "--http-addr", cpPorts.http}
	cp := start(t, env, cpArgs...)
	waitReady(t, cp, cpPorts.http, 60*time.Second)
	base := "http://" + cpPorts.http
	op := api{base: base, token: "operator-secret-token-123"}
	var tok nodeOut
	op.call(t, "POST", "/v1/admin/nodes", map[string]any{"name": "edge"}, 201, &tok)
	np := freePorts(t)
	node := start(t, cleanEnv(), append([]string{"dataplane", "--data-dir", newDataDir(t), "--control-plane", base, "--node-token", tok.Token}, np.args()...)...)
	waitReady(t, node, np.http, 30*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var list struct{ Data []nodeOut }
		op.call(t, "GET", "/v1/admin/nodes", nil, 200, &list)
		if len(list.Data) == 1 && list.Data[0].LastSeenAt != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not seen: %+v", list.Data)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c, org := signup(t, base, "outage@example.com")
	c.call(t, "PUT", "/v1/orgs/"+org+"/subscription", map[string]any{"plan": "pro"}, 200, nil)
	var inst instanceOut
	c.call(t, "POST", "/v1/orgs/"+org+"/instances", map[string]any{"name": "site"}, 201, &inst)
	waitRunning(t, c, org, inst.ID)
	instPath := "/v1/orgs/" + org + "/instances/" + inst.ID

	t.Run("read-your-writes across control plane and node", func(t *testing.T) {
		readYourWritesRounds(t, c, org, inst.ID, np.mqtt, 25)
	})

	var cred credOut
	if code, _ := c.callPrefer(t, 5, "POST", instPath+"/credentials", map[string]any{"username": "live"}, &cred); code != 201 {
		t.Fatalf("create: %d", code)
	}
	closed := make(chan time.Time, 2)
	conn, err := net.DialTimeout("tcp", np.mqtt, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	dev := paho.NewClient(paho.ClientConfig{Conn: conn,
		OnServerDisconnect: func(*paho.Disconnect) { closed <- time.Now() },
		OnClientError:      func(error) { closed <- time.Now() }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, err := dev.Connect(ctx, &paho.Connect{ClientID: "live-1", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: cred.MQTTUsername, PasswordFlag: true, Password: []byte(cred.Password)}); err != nil {
		t.Fatalf("device connect: %v", err)
	}
	cancel()
	t.Cleanup(func() { _ = dev.Disconnect(&paho.Disconnect{}) })

	readyz := func() (int, string) {
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + np.http + "/readyz")
		if err != nil {
			t.Fatalf("node /readyz: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("node list and instance show the applied revision", func(t *testing.T) {
		var in struct {
			ConfigRevision  int64 `json:"config_revision"`
			AppliedRevision int64 `json:"applied_revision"`
			InSync          bool  `json:"in_sync"`
		}
		c.call(t, "GET", instPath, nil, 200, &in)
		var list struct{ Data []nodeOut }
		op.call(t, "GET", "/v1/admin/nodes", nil, 200, &list)
		if !in.InSync || in.ConfigRevision == 0 || in.AppliedRevision < in.ConfigRevision || list.Data[0].AppliedRevision < in.ConfigRevision {
			t.Fatalf("instance %+v, node list %+v: want the node to show the instance's revision applied", in, list.Data)
		}
	})

	// The outage.
	if err := cp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cp.wait(t, 15*time.Second)
	down := time.Now()
	sawReady, sawUnready := false, false
	var unreadyBody string
	for time.Since(down) < 60*time.Second {
		code, body := readyz()
		switch {
		case time.Since(down) < 8*time.Second && code == 200:
			sawReady = true
		case time.Since(down) > 12*time.Second && code == 503:
			sawUnready, unreadyBody = true, body
		case time.Since(down) > 12*time.Second:
			t.Fatalf("node /readyz %d %s %s into the outage; want 503 past the 10 s bound", code, body, time.Since(down).Round(time.Second))
		}
		select {
		case at := <-closed:
			t.Fatalf("device disconnected %s into the outage", at.Sub(down))
		case <-time.After(time.Second):
		}
	}
	if !sawReady || !sawUnready || !strings.Contains(unreadyBody, "config-sync") {
		t.Fatalf("node /readyz during the outage: ready within the bound %v, unready past it %v (%s)", sawReady, sawUnready, unreadyBody)
	}

	cp = start(t, env, cpArgs...)
	waitReady(t, cp, cpPorts.http, 60*time.Second)
	back := time.Now()
	// The node is following again (its /readyz says so) within about a
	// second; the change below must then reach it at once.
	for {
		code, body := readyz()
		if code == 200 {
			t.Logf("node ready again %s after the control plane answered", time.Since(back).Round(time.Millisecond))
			break
		}
		if time.Since(back) > 2*time.Second {
			t.Fatalf("node /readyz %d %s %s after the control plane came back", code, body, time.Since(back).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.call(t, "PATCH", instPath+"/credentials/"+cred.ID, map[string]any{"enabled": false}, 200, nil)
	select {
	case at := <-closed:
		took := at.Sub(back)
		t.Logf("after a 60 s outage: credential disabled right after the control plane answered; live connection closed in %s", took.Round(time.Millisecond))
		if took > 2*time.Second {
			t.Fatalf("live connection closed %s after the control plane came back; want ≤ 2 s", took)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("live connection of a credential disabled after the outage still open 2 s after the control plane answered")
	}
}
